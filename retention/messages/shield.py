"""The shield: each contacted row's message checked, repaired where it can be, else replaced by the safe template.

Rules are data (BANNED, UNSAFE, the length bounds). Every row records in shield_checks what each check found and what
was done: action none (sent as written), repaired (trimmed), or template (replaced by the deterministic template).
"""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.dtypes import StringDType

from retention.config import Config
from retention.messages.generate import clean_name, pct_texts, template_messages

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
}
"""Phrases no message may contain (whole words, any case), by why they are banned."""

UNSAFE = r"[\x00-\x1f\x7f]|<[^>]*>|[{}@]|https?://|www\.|[0-9]{6}"
"""Control characters, markup, unfilled slots, links, addresses and handles (@), long digit runs (phone, account)."""

PERCENT = r"[0-9]+(?:[.,][0-9]+)?\s*(?:%|(?i:per ?cent))"
"""Any percentage a message states."""

# The patterns are RE2, run by pyarrow.compute on the Arrow strings. RE2 leaves its fast engine for \b, so word
# edges are an explicit class (\pL letters, \pN digits, any script).
_EDGE = r"[^\pL\pN_]"
_BANNED_RE = (rf"(?i:(?:^|{_EDGE})(?:" + "|".join(re.escape(p) for phrases in BANNED.values() for p in phrases)
              + rf")(?:{_EDGE}|$))")
OUTCOMES = {"banned": ("pass", "fail"), "content": ("pass", "fail"), "length": ("pass", "trimmed", "fail"),
            "name": ("pass", "fail"), "offer": ("pass", "fail"), "action": ("none", "repaired", "template")}
"""What shield_checks may record for each check, and the action taken."""


# checks: vectorised over rows, one bool per row


def has_banned(text: pd.Series, names: pd.Series) -> np.ndarray:
    """True where the text holds a banned phrase; one mention of the customer's own name (say "Hurry") is excused."""
    hit = _matches(text, _BANNED_RE)
    # only rows whose name itself matches need the name taken out; they are rare, so a loop over them is fine
    again = np.flatnonzero(hit & _matches(names, _BANNED_RE))
    ours = [re.sub(rf"\b{re.escape(names.iloc[i])}\b", " ", text.iloc[i], count=1) for i in again]
    hit[again] = _matches(pd.Series(ours, dtype="str"), _BANNED_RE)
    return hit


def has_unsafe(text: pd.Series) -> np.ndarray:
    """True where the text holds control characters, markup, links, addresses or long digit runs."""
    return _matches(text, UNSAFE)


def _arrow(s: pd.Series) -> pa.Array:
    return pa.array(s.astype("str"))


def _matches(s: pd.Series, pattern: str) -> np.ndarray:
    """The RE2 pattern found in each string (typographic apostrophes read as plain ones)."""
    plain = pc.replace_substring(_arrow(s), "\u2019", "'")
    return pc.match_substring_regex(plain, pattern).fill_null(False).to_numpy(zero_copy_only=False).copy()


def has_name(text: pd.Series, names: pd.Series) -> np.ndarray:
    """True where the text holds the row's (cleaned) name as a whole word, not inside another word."""
    t, n = _strings(text), _strings(names)
    found = np.zeros(len(t), dtype=bool)
    todo, start = np.arange(len(t)), np.zeros(len(t), dtype=np.int64)
    while todo.size:  # each round looks at the next occurrence in the rows whose last one sat inside a word
        at = np.strings.find(t[todo], n[todo], start)
        end = at + np.strings.str_len(n[todo])
        before = np.strings.slice(t[todo], np.maximum(at - 1, 0), np.maximum(at, 0))
        after = np.strings.slice(t[todo], end, end + 1)
        whole = (at >= 0) & ~np.strings.isalnum(before) & ~np.strings.isalnum(after)
        found[todo[whole]] = True
        again = (at >= 0) & ~whole
        todo, start = todo[again], at[again] + 1
    return found


def offer_ok(text: pd.Series, expected: np.ndarray) -> np.ndarray:
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


def _strings(s: pd.Series) -> np.ndarray:
    return s.to_numpy(dtype=StringDType())


# the stage


def shield(plan: pd.DataFrame, cfg: Config, ds: str) -> pd.DataFrame:
    """The plan of day `ds` with each contacted message checked and repaired or replaced, plus shield_checks (JSON).

    `cfg` keeps the stage signature of the daily DAG; the rules themselves are this module's data.
    """
    contact = plan["contact"].to_numpy(dtype=bool)
    rows = plan.loc[contact]
    text = rows["message"].astype("str").fillna("")  # a failed generation is an empty message: it gets the template
    names = clean_name(rows["name"])
    expected = pct_texts(rows["offer_pct"].to_numpy(dtype=np.float64))

    # check the message as written
    length = text.str.len().to_numpy()
    found = {"banned": ~has_banned(text, names), "content": ~has_unsafe(text),
             "length": (length >= MIN_CHARS) & (length <= MAX_CHARS),
             "name": has_name(text, names), "offer": offer_ok(text, expected)}
    keep = np.logical_and.reduce(list(found.values()))

    # repair: trim over-long text that passes everything else, if the name and offer survive the cut
    long = np.flatnonzero(found["banned"] & found["content"] & found["name"] & found["offer"] & (length > MAX_CHARS))
    cut = trim(text.iloc[long])
    fits = cut.str.len().between(MIN_CHARS, MAX_CHARS).to_numpy()
    fixed = long[fits & has_name(cut, names.iloc[long]) & offer_ok(cut, expected[long])]
    repaired = np.zeros(len(rows), dtype=bool)
    repaired[fixed] = True

    # replace the rest by the safe template
    final = text.to_numpy(dtype=object)
    final[long] = cut.to_numpy(dtype=object)  # the ones that did not fit are replaced next
    replace = ~keep & ~repaired
    final[replace] = template_messages(rows.loc[replace], ds).to_numpy(dtype=object)

    codes = {name: np.where(ok, 0, 1) for name, ok in found.items()}  # indices into OUTCOMES
    codes["length"] = np.select([found["length"], repaired], [0, 1], default=2)
    codes["action"] = np.select([keep, repaired], [0, 1], default=2)
    return plan.assign(message=_spread(final, contact, plan.index),
                       shield_checks=_spread(_checks_json(codes), contact, plan.index))


def _spread(values: np.ndarray, contact: np.ndarray, index: pd.Index) -> pd.Series:
    """A str column holding `values` on the contacted rows and null elsewhere."""
    out = np.full(len(contact), None, dtype=object)
    out[contact] = values.astype(object)
    return pd.Series(out, index=index, dtype="str")


def _checks_json(codes: dict[str, np.ndarray]) -> np.ndarray:
    """One JSON object per row, {"banned": "pass", ..., "action": "none"}; written once per distinct outcome."""
    key = np.zeros(len(codes["action"]), dtype=np.int64)
    for name, outcomes in OUTCOMES.items():
        key = key * len(outcomes) + codes[name]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    texts = [json.dumps({name: OUTCOMES[name][codes[name][i]] for name in OUTCOMES}) for i in first]
    return np.array(texts, dtype=object)[inverse]
