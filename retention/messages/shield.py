"""The shield: each contacted row's message checked, repaired where it can be, else replaced by the safe template.

Rules are data (BANNED, CONTENT, LINK, PHONE, INJECTION, the length bounds, ALLOWED_LINKS and ALLOWED_PHONES), plus
the grounding check of `grounding.py` (numbers, dates, proper nouns, second offers and language against the facts,
the brand and the language of the config).
Every row records in shield_checks what each check found and what was done: action none (sent as written),
repaired (trimmed), or template (replaced by the deterministic template, and `generator` set to template_fallback).
Customer fields never reach a message unneutralised: `generate.clean_name` runs before any backend, and the checks
compare with the cleaned name.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from retention.config import Config
from retention.messages.grounding import GROUNDING, MARK, grounding_failures
from retention.messages.template import CHECK_IN, DISCOUNT, OPENINGS, pct_texts, template_messages
from retention.messages.prompt import FALLBACK_NAME, clean_name

MIN_CHARS, MAX_CHARS = 50, 200
"""Allowed message length in characters."""

BANNED = {
    "profanity": ("damn", "dammit", "hell", "crap", "crappy", "shit", "shitty", "fuck", "fucking", "bastard",
                  "bitch", "asshole", "piss", "pissed", "wtf"),
    "false_promise": ("guaranteed", "guarantee", "risk-free", "risk free", "free forever", "forever free",
                      "no strings attached", "never pay", "lowest price ever", "best price ever", "you have won",
                      "you've won", "winner", "lifetime discount"),
    "pressure": ("act now", "last chance", "or lose", "final notice", "final warning", "expires today",
                 "expires tonight", "limited time", "hurry", "don't miss out", "do not miss out",
                 "before it's too late", "today only", "only today", "respond immediately", "urgent"),
    "meta": ("as an ai", "ai assistant", "language model", "smollm", "hugging face", "chatbot"),
}
"""Phrases no message may contain (whole words, any case), by why they are banned."""

CONTENT = r"[\p{Cc}\p{Cf}\p{Co}]|[<>{}\[\]\\@`|]|\*\*"
"""Control and invisible format characters, markup, unfilled slots ({name}, [Customer Name]), handles, addresses."""

LINK_TLDS = ("com", "net", "org", "io", "co", "ly", "me", "info", "biz", "app", "xyz", "gov", "edu", "us", "uk",
             "ru", "cn", "de", "fr", "ca", "au", "in", "tk", "gl", "gd", "to", "sh", "link", "click", "online",
             "site", "shop", "top", "live")
LINK = r"(?i:https?:|www\.|[\pL\pN-]+\.(?:" + "|".join(LINK_TLDS) + r")(?:[^\pL\pN]|$))"
"""A URL scheme, www., or a bare domain under a common top-level domain."""
PHONE = r"\+?\(?\pN(?:[ ().\-/]?\pN){5,}"
"""Six or more digits that separators may break up: phone, account and card numbers."""
ALLOWED_LINKS: tuple[str, ...] = ()
"""Links a message may carry (exact text, e.g. "https://example.com/offers"); none by default."""
ALLOWED_PHONES: tuple[str, ...] = ()
"""Phone numbers a message may carry (exact text, e.g. "+1 800 555 0100"); none by default."""

INJECTION = (r"instructions?", r"prompts?", r"ignore (?:all|any|the|previous|prior|above|your)", r"disregard",
             r"jailbreak", r"developer mode", r"you are now", r"customer[ _]record", r"system ?:", r"assistant ?:",
             r"user ?:")
"""Signs that a message talks about, or follows, instructions instead of speaking to the customer."""

PERCENT = r"[0-9]+(?:[.,][0-9]+)?\s*(?:%|(?i:per ?cent))"
"""Any percentage a message states."""

TEMPLATE_WORDS = frozenset(re.findall(r"[\w']+", " ".join([*sum(OPENINGS.values(), ()), *CHECK_IN, *DISCOUNT])))
"""Words of the template wordings: a customer called "Dear" or "Welcome" is not named by a template."""
NAME_CHUNK = 2000
"""Names per RE2 pass when looking for other customers' names: each pass costs about 0.1-0.3 s per million
messages, so a day whose names are first names (hundreds to tens of thousands) takes one to a few passes."""
OWN_NAME_GROUP = 64
"""Rows sharing a name from which one replace call per name beats a Python loop over them."""

CHECKS = ("banned", "content", "contact", "injection", "others", "length", "name", "offer", *GROUNDING)
OUTCOMES = {**{check: ("pass", "fail") for check in CHECKS}, "length": ("pass", "trimmed", "fail"),
            "action": ("none", "repaired", "template")}
"""What shield_checks may record for each check, and the action taken."""
PASS, TRIMMED, FAIL = 0, 1, 2  # length codes; the other checks use 0 pass, 1 fail
NONE, REPAIRED, TEMPLATE = 0, 1, 2  # action codes

# The patterns are RE2, run by pyarrow.compute on the Arrow strings. RE2 leaves its fast engine for \b, so word
# edges are an explicit class (\pL letters, \pN digits, any script).
_EDGE = r"[^\pL\pN_]"


def _words(phrases: Iterable[str], escape: bool = True) -> str:
    """One whole-word, any-case RE2 alternation; a plain apostrophe also matches the typographic one."""
    parts = (re.escape(p).replace("'", "['\u2019]") if escape else p for p in phrases)
    return rf"(?i:(?:^|{_EDGE})(?:" + "|".join(parts) + rf")(?:{_EDGE}|$))"


_BANNED_RE = _words(p for phrases in BANNED.values() for p in phrases)
_INJECTION_RE = _words(INJECTION, escape=False)
_SUSPECT_RE = "|".join([_BANNED_RE, CONTENT, LINK, PHONE, _INJECTION_RE])  # one pass finds the rows to look at


# checks: vectorised over rows, one bool per row


def has_banned(text, names) -> np.ndarray:
    """True where the text holds a banned phrase; one mention of the customer's own name (say "Hurry") is excused."""
    text, names = _arrow(text), _arrow(names)
    hit = _matches(text, _BANNED_RE)
    # only rows whose name itself matches need the name taken out; they are rare, so a loop over them is fine
    again = np.flatnonzero(hit & _matches(names, _BANNED_RE))
    ours = [re.sub(rf"\b{re.escape(names[i].as_py())}\b", " ", text[i].as_py(), count=1) for i in again]
    hit[again] = _matches(pa.array(ours, type=pa.large_string()), _BANNED_RE)
    return hit


def has_contact(text, links: Iterable[str] = ALLOWED_LINKS, phones: Iterable[str] = ALLOWED_PHONES) -> np.ndarray:
    """True where the text holds a link or phone number other than the allowed ones (which are cut out first)."""
    arr = _arrow(text)
    for allowed in (*links, *phones):
        arr = pc.replace_substring(arr, allowed, " ")
    return _matches(arr, f"{LINK}|{PHONE}")


def has_unsafe(text) -> np.ndarray:
    """True where the text holds control characters, markup, slots, addresses, or links and numbers not allowed."""
    return _matches(text, CONTENT) | has_contact(text)


def has_injection(text) -> np.ndarray:
    """True where the text talks about instructions, prompts or roles: a sign it obeyed a customer field."""
    return _matches(text, _INJECTION_RE)


def has_name(text, names) -> np.ndarray:
    """True where the text holds the row's (cleaned) name as a whole word, not inside another word."""
    return _name_checks(_arrow(text), _arrow(names))[0]


def has_other_name(text, names, batch_names: Iterable[str], brand: str = Config.brand_name) -> np.ndarray:
    """True where the text, its own name taken out, holds another batch customer's name as whole words."""
    return _name_checks(_arrow(text), _arrow(names), other_names(batch_names, brand))[1]


@dataclass(frozen=True)
class OtherNames:
    """The batch names a message must not hold, ready to look for: built once per day, not once per chunk.

    Names made only of template or brand words ("Dear", "Welcome", "Mobile") and one-letter names are left out:
    the template itself could not be sent otherwise. `passes` are RE2 alternations of NAME_CHUNK names each,
    which find the texts holding a name as a plain substring (an alternation with word edges around it blows up
    RE2's automaton, one without stays linear); `words` are the names as words, which the few texts found are
    then read against.
    """

    passes: tuple[str, ...]
    words: frozenset[str]


def other_names(batch_names: Iterable[str], brand: str) -> OtherNames:
    ours = TEMPLATE_WORDS | set(brand.split())
    others = sorted({n for n in batch_names if len(n) > 1 and n != FALLBACK_NAME and not set(n.split()) <= ours})
    passes = tuple("|".join(re.escape(n) for n in others[start:start + NAME_CHUNK])
                   for start in range(0, len(others), NAME_CHUNK))
    return OtherNames(passes, frozenset(" ".join(_WORDS.findall(n)) for n in others))  # "J.R. Ewing": "J.R Ewing"


NO_OTHERS = OtherNames((), frozenset())


def _other_names(masked: pa.Array, others: OtherNames) -> np.ndarray:
    """True where the masked text holds one of the other names as whole words (case-sensitive)."""
    maybe = np.zeros(len(masked), dtype=bool)
    for pattern in others.passes:
        maybe |= _matches(masked, pattern)
    hit = np.zeros(len(masked), dtype=bool)
    hit[maybe] = [_names_in(t, others.words) for t in masked.filter(maybe).to_pylist()]
    return hit


_WORDS = re.compile(r"[^\W_]+(?:['\u2019.\-][^\W_]+)*")  # a word, with the name punctuation inside it ("O'Brien")
_PIECES = re.compile(r"['\u2019.\-]")


def _names_in(text: str, names: frozenset[str]) -> bool:
    """True when the text holds a name as whole words: a run of 1-4 words ("Mary Ann"), or a piece of a word
    that name punctuation joins ("Bob" in "Bob's", "Mary" in "Mary-Jane")."""
    words = _WORDS.findall(text)
    pieces = {p for w in words for p in _PIECES.split(w)}
    runs = {" ".join(words[i:i + n]) for n in range(1, 5) for i in range(len(words) - n + 1)}
    return not names.isdisjoint(runs) or not names.isdisjoint(pieces)


@dataclass(frozen=True)
class Batch:
    """What the shield needs of the day's whole plan, computed once per stage (a streamed stage checks its chunks
    against every customer of the day): the cleaned names and the customer ids."""

    names: np.ndarray
    """Distinct cleaned names."""
    ids: pa.Array
    """Customer ids (large_string)."""
    ids_have_digits: bool
    """Every id holds three digits in a row: only texts that do can hold one."""
    id_chars: str
    """The characters ids hold besides letters, digits and "_" (e.g. "-")."""
    _others: dict[str, OtherNames] = field(default_factory=dict, compare=False, repr=False)

    def others(self, brand: str) -> OtherNames:
        """The names no message may hold, built on first use for the brand and kept for the next chunk."""
        if brand not in self._others:
            self._others[brand] = other_names(self.names, brand)
        return self._others[brand]


def batch_index(batch: pd.DataFrame | Batch) -> Batch:
    """The Batch of a frame with name and customer_id columns (a Batch is returned as it is)."""
    if isinstance(batch, Batch):
        return batch
    ids = pa.array(batch["customer_id"].dropna().astype("str"), type=pa.large_string())
    digits = pc.all(pc.match_substring_regex(ids, "[0-9]{3}")).as_py() is not False
    chars = "".join(sorted(set("".join(pc.unique(pc.replace_substring_regex(ids, r"[\pL\pN_]+", "")).to_pylist()))))
    return Batch(clean_name(batch["name"]).unique(), ids, digits, chars)


def has_customer_id(text, batch: pd.DataFrame | pd.Series | Batch) -> np.ndarray:
    """True where the text holds a customer id of the batch as a whole token.

    Tokens are runs of word characters and of the other characters ids hold ("-"). When every id holds three
    digits in a row, only texts that do are looked at (messages state "10%" and "12 months"): the usual text
    costs one fast regex pass. The few texts' tokens are then looked up among the ids (one pass over the ids).
    """
    if isinstance(batch, pd.Series):
        batch = batch_index(pd.DataFrame({"customer_id": batch, "name": ""}))
    batch = batch_index(batch)
    text = _arrow(text)
    maybe = _matches(text, "[0-9]{3}") if batch.ids_have_digits else np.ones(len(text), dtype=bool)
    hit = np.zeros(len(text), dtype=bool)
    if maybe.any():
        token = re.compile(rf"[\w{re.escape(batch.id_chars)}]+")
        tokens = [set(token.findall(t or "")) for t in text.filter(maybe).to_pylist()]
        candidates = pa.array(sorted(set().union(*tokens)), type=pa.large_string())
        known = set(batch.ids.filter(pc.is_in(batch.ids, value_set=candidates)).to_pylist())
        hit[maybe] = [not known.isdisjoint(t) for t in tokens]
    return hit


def offer_ok(text, expected: np.ndarray) -> np.ndarray:
    """True where the text states exactly the expected percentage and no other ("" expected: no percentage at all)."""
    arr = _arrow(text)
    count = pc.count_substring_regex(arr, PERCENT).fill_null(0).to_numpy(zero_copy_only=False)
    stated = pc.extract_regex(arr, f"(?P<pct>{PERCENT})").field("pct").to_numpy(zero_copy_only=False)
    return np.where(expected == "", count == 0, (count == 1) & (stated == expected.astype(object)))


def trim(text: pd.Series) -> pd.Series:
    """Cut text longer than MAX_CHARS at the last word boundary that fits."""
    head = pc.utf8_slice_codeunits(_arrow(text), 0, MAX_CHARS + 1)  # one extra character tells a word end from a cut
    cut = pc.utf8_rtrim(pc.replace_substring_regex(head, r"\s+\S*$", ""), characters=" ,;:-")
    return pd.Series(cut, index=text.index, dtype="str")


def _arrow(s) -> pa.Array:
    """Strings as one Arrow array (large_string: pyarrow's RE2 kernels run on it without copies)."""
    if not isinstance(s, (pa.Array, pa.ChunkedArray)):
        s = pa.array(pd.Series(s, dtype="str"), type=pa.large_string())  # chunked when the Series' Arrow data is
    if isinstance(s, pa.ChunkedArray):
        s = s.combine_chunks()
    return s.cast(pa.large_string())


def _matches(s, pattern: str) -> np.ndarray:
    """The RE2 pattern found in each string (False for a null)."""
    return pc.match_substring_regex(_arrow(s), pattern).fill_null(False).to_numpy(zero_copy_only=False).copy()


def _name_checks(text: pa.Array, names: pa.Array, others: OtherNames = NO_OTHERS
                 ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, list[str]]]:
    """(own, other, (codes, distinct)): each row's name found as a whole word in its text, another batch name
    found there, and the text with its own name as MARK, dictionary-encoded (a few hundred distinct texts for
    the template's million: what the grounding check and the other-names check read).

    No string kernel takes a different needle per row, so the rows are sorted by name and each name's slice gets
    one literal replace of the name by MARK (first names repeat: a few hundred calls for a million rows); rows
    with rarer names get a plain loop. A literal replace also marks a name inside a longer word ("Al" in
    "Also"); the few rows where that happened are redone word by word. Other names are looked for in the
    distinct marked texts, so the row's own name never counts as another's.
    """
    codes, distinct = pd.factorize(pd.Series(names, dtype="str"))
    order = np.argsort(codes, kind="stable")
    text, names = text.take(order), names.take(order)  # (n,) sorted by name
    starts = np.flatnonzero(np.diff(codes[order], prepend=-2))
    sizes = np.diff(starts, append=len(order))
    common = sizes >= OWN_NAME_GROUP
    marked = pa.concat_arrays([text.slice(0, 0), *(
        pc.replace_substring(text.slice(a, n), distinct[codes[order[a]]], MARK) if big else text.slice(a, n)
        for a, n, big in zip(starts, sizes, common))])
    rare = np.repeat(~common, sizes)
    redo = np.flatnonzero(rare | _matches(marked, rf"{MARK}[\pL\pN_]|[\pL\pN_]{MARK}"))
    blanked = [_blank_name(t, n) for t, n in zip(text.take(redo).to_pylist(), names.take(redo).to_pylist())]
    marked = _put(marked, [(redo, pa.array(blanked, type=pa.large_string()))])
    own = np.empty(len(order), dtype=bool)
    own[order] = _matches(marked, rf"(?:^|[^\pL\pN_{MARK}]){MARK}(?:[^\pL\pN_{MARK}]|$)")
    encoded = pc.dictionary_encode(marked)
    codes = np.empty(len(order), dtype=np.int64)
    codes[order] = encoded.indices.to_numpy(zero_copy_only=False)
    return own, _other_names(encoded.dictionary, others)[codes], (codes, encoded.dictionary.to_pylist())


def _put(arr: pa.Array, pieces: list[tuple[np.ndarray, pa.Array]]) -> pa.Array:
    """`arr` with the rows of each piece replaced by the piece's values (one take: if_else on strings is slow)."""
    pieces = [(rows, values) for rows, values in pieces if len(rows)]
    if not pieces:
        return arr
    index = np.arange(len(arr))
    index[np.concatenate([rows for rows, _ in pieces])] = len(arr) + np.arange(sum(len(r) for r, _ in pieces))
    return pa.concat_arrays([arr, *(values.cast(pa.large_string()) for _, values in pieces)]).take(index)


def _blank_name(text: str, name: str) -> str:
    """The text with each whole-word occurrence of name replaced by MARK (word characters: letters, digits, _)."""
    at = text.find(name)
    while at >= 0:
        end = at + len(name)
        if not _word(text[at - 1:at]) and not _word(text[end:end + 1]):
            text = text[:at] + MARK + text[end:]
        at = text.find(name, at + 1)
    return text


def _word(char: str) -> bool:
    return char.isalnum() or char == "_"


# the checks together


def evaluate(rows: pd.DataFrame, text, batch: pd.DataFrame | Batch, brand: str = Config.brand_name,
             language: str = Config.language) -> tuple[dict[str, np.ndarray], pa.Array]:
    """(codes, repaired): each check's outcome code per row (OUTCOMES) with the action, and the text after repairs.

    `batch` is the day's whole plan (or its Batch): no message may name another of its customers or hold one of
    its ids. The
    grounding facts are the rows' offer_pct and, where the rows hold them, tenure_months and monthly_charges.
    """
    text = _arrow(text).fill_null("")  # a failed generation: "", which fails length, name and offer
    names = _arrow(clean_name(rows["name"]))
    pct = rows["offer_pct"].to_numpy(dtype=np.float64)
    facts = (pct, _fact(rows, "tenure_months"), _fact(rows, "monthly_charges"))
    expected = pct_texts(pct)
    length = pc.utf8_length(text).to_numpy()
    batch = batch_index(batch)
    own, other, marked = _name_checks(text, names, batch.others(brand))
    ok = {check: np.ones(len(rows), dtype=bool) for check in CHECKS}
    # the content rules, on the few rows one of them might reject
    sus = np.flatnonzero(_matches(text, _SUSPECT_RE))
    ok["banned"][sus] = ~has_banned(text.take(sus), names.take(sus))
    ok["content"][sus] = ~_matches(text.take(sus), CONTENT)
    ok["contact"][sus] = ~has_contact(text.take(sus), ALLOWED_LINKS, ALLOWED_PHONES)
    ok["injection"][sus] = ~has_injection(text.take(sus))
    # the customer rules
    ok["others"] = ~(other | has_customer_id(text, batch))
    ok["length"] = (length >= MIN_CHARS) & (length <= MAX_CHARS)
    ok["name"], ok["offer"] = own, offer_ok(text, expected)
    # the grounding rules, on the text with the row's own name and the brand masked
    for kind, failed in _grounding(marked, brand, facts, language).items():
        ok[kind] = ~failed
    keep = np.logical_and.reduce(list(ok.values()))

    # repair: trim over-long text that passes everything else, if the name and offer survive the cut
    rest = np.logical_and.reduce([v for k, v in ok.items() if k != "length"])
    long = np.flatnonzero(rest & (length > MAX_CHARS))
    cut = _arrow(trim(pd.Series(text.take(long), dtype="str")))
    own_cut, _, marked_cut = _name_checks(cut, names.take(long))
    grounded = ~np.logical_or.reduce(list(_grounding(marked_cut, brand, [f[long] for f in facts], language).values()))
    fits = ((pc.utf8_length(cut).to_numpy() >= MIN_CHARS) & own_cut & offer_ok(cut, expected[long])
            & grounded)  # the cut is at most MAX_CHARS long; a cut "12 months" may leave a bare "12"
    repaired = np.zeros(len(rows), dtype=bool)
    repaired[long[fits]] = True
    text = _put(text, [(long[fits], cut.filter(fits))])

    codes = {name: np.where(passed, 0, 1) for name, passed in ok.items()}
    codes["length"] = np.select([ok["length"], repaired], [PASS, TRIMMED], default=FAIL)
    codes["action"] = np.select([keep, repaired], [NONE, REPAIRED], default=TEMPLATE)
    return codes, text


def acceptable(rows: pd.DataFrame, text: pd.Series, batch: pd.DataFrame | Batch, brand: str = Config.brand_name,
               language: str = Config.language) -> np.ndarray:
    """True where the shield would send the text as written or repaired (the generators retry the rest)."""
    return evaluate(rows, text, batch, brand, language)[0]["action"] != TEMPLATE


def _grounding(marked: tuple[np.ndarray, list[str]], brand: str, facts, language: str) -> dict[str, np.ndarray]:
    """grounding_failures of the dictionary-encoded texts whose own name is MARK."""
    return grounding_failures(*marked, *facts, brand, language)


def _fact(rows: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric prompt field per row (NaN where absent or not a number: the prompt then gave no such fact)."""
    if column not in rows:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


# the stage


def shield(plan: pd.DataFrame, cfg: Config, ds: str, batch: pd.DataFrame | Batch | None = None) -> pd.DataFrame:
    """The plan of day `ds` with each contacted message checked and repaired or replaced, plus shield_checks (JSON).

    A replaced row's generator becomes template_fallback. `cfg` gives the brand and language; the rules
    themselves are this module's data. `batch`: the day's whole plan or its Batch when `plan` is one chunk of it.
    """
    contact = plan["contact"].to_numpy(dtype=bool)
    rows = plan.loc[contact]
    codes, text = evaluate(rows, rows["message"], plan if batch is None else batch, cfg.brand_name, cfg.language)
    replace = codes["action"] == TEMPLATE
    if replace.any():
        text = _put(text, [(np.flatnonzero(replace), _arrow(template_messages(rows.loc[replace], ds, cfg.brand_name)))])
    generator = plan["generator"].mask(_spread_bool(replace, contact), "template_fallback")
    return plan.assign(message=_spread(text, contact, plan.index), generator=generator,
                       shield_checks=_spread(_checks_json(codes), contact, plan.index))


def _spread_bool(values: np.ndarray, contact: np.ndarray) -> np.ndarray:
    """A bool per plan row: `values` on the contacted rows, False elsewhere."""
    out = np.zeros(len(contact), dtype=bool)
    out[contact] = values
    return out


def _spread(values, contact: np.ndarray, index: pd.Index) -> pd.Series:
    """A str column holding `values` (Arrow or numpy, one per contacted row) there and null elsewhere."""
    at = np.cumsum(contact) - 1  # plan row -> its place among the contacted rows
    taken = _arrow(values).take(pa.array(np.maximum(at, 0), mask=~contact))  # a masked index gives null
    return pd.Series(taken, index=index, dtype="str")


def _checks_json(codes: dict[str, np.ndarray]) -> pa.Array:
    """One JSON object per row, {"banned": "pass", ..., "action": "none"}; written once per distinct outcome."""
    key = np.zeros(len(codes["action"]), dtype=np.int64)
    for name, outcomes in OUTCOMES.items():
        key = key * len(outcomes) + codes[name]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    texts = [json.dumps({name: OUTCOMES[name][codes[name][i]] for name in OUTCOMES}) for i in first]
    return pa.array(texts, type=pa.large_string()).take(inverse)
