"""The grounding check: a message may state only what its facts support.

Facts: the offer (its percentage, checked by the shield's offer rule, and its OFFER_TERM_MONTHS term), and the
customer's own tenure and monthly charges where the prompt gave them. A message fails, by kind (GROUNDING):
- numbers: a number, amount or duration the facts do not give ("$100 monthly bill", "3-month program", "a
  12-month financial picture" that is no offer term), or any currency but CURRENCY;
- dates: a day, month, time or relative date ("by Friday", "tomorrow", "March 3");
- proper_nouns: a proper noun other than the customer's name and the brand (both masked before this check): a
  capitalised word that starts no sentence and is no ordinary word, a CamelCase or ALL-CAPS word ("FiberToCiti",
  "App-Cemtech", "AT&T");
- second_offer: another offer, fee or condition ("free upgrade", "cashback", "activation fee"), or any discount
  when the offer is none;
- language: a letter outside the Latin script, a common word of another language, or too few English function
  words.

Each distinct masked text is read once in Python (`read_claims`); the facts of each row are then compared with
numpy, and only rows whose text states a fact-dependent number (tenure, charges) are looked at one by one.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from retention.messages.prompt import OFFER_TERM_MONTHS

GROUNDING = ("numbers", "dates", "proper_nouns", "second_offer", "language")
"""The kinds of grounding failure, each a key of shield_checks."""

CURRENCY, CURRENCY_WORDS = "$", ("dollar", "dollars")
"""The currency amounts may be stated in (monthly_charges are dollars in IBM Telco)."""
_SYMBOLS = "".join(chr(c) for c in range(0x20, 0x3000) if unicodedata.category(chr(c)) == "Sc")
OTHER_CURRENCIES = ("cent", "cents", "euro", "euros", "pound", "pounds", "quid", "yen", "yuan", "rupee", "rupees",
                    "peso", "pesos", "franc", "francs", "rubles", "reais", "usd", "eur", "gbp",
                    "inr", "cad", "aud", "jpy", "cny", "mxn", "chf", "bucks")
"""Currency words a message may not use; currency symbols but CURRENCY fail too."""

ALLOWED_CAPS = frozenset(
    "I I'm I'll I'd I've OK Ok YES Yes STOP HELP Help Reply Tap Text Thank Thanks Please Mr Mrs Ms Mx Dr Team "
    "Customer Care Support Service Account DSL Fiber Optic Fiber-optic Fiber-Optic Internet TV Wi-Fi WiFi".split())
"""Words that may be capitalised inside a sentence without being a proper noun."""

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec")
RELATIVE_DATES = (r"tomorrow", r"tonight", r"yesterday", r"weekend", r"midnight", r"noon", r"o'clock",
                  r"(?:this|next|last) (?:week|month)", r"(?:end|start|beginning|middle) of (?:the|this|next) \w+",
                  r"christmas", r"easter", r"thanksgiving", r"halloween", r"new year'?s?", r"valentine'?s?",
                  r"\d+(?:st|nd|rd|th)", r"\d{1,2}(?::\d\d)? ?[ap]\.?m\b\.?", r"\d{1,4}[/\-]\d{1,2}(?:[/\-]\d{1,4})?",
                  r"(?:19|20)\d\d")
"""Relative dates, holidays, times, ordinals, numeric dates and years (any case, whole words)."""

SECOND_OFFER = (r"(?<!feel )free(?! to\b)", r"bonus",
                r"extra (?:data|months?|discounts?|savings|minutes|gb|lines?|perks?)", r"cash ?back", r"rebates?",
                r"vouchers?", r"coupons?", r"gift ?cards?", r"waive[ds]?", r"complimentary", r"refund(?:s|ed)?",
                r"credits?(?! card)", r"points", r"rewards (?:program|points|card)",
                r"loyalty (?:points|program|bonus)", r"prizes?", r"trials?", r"upgrade[sd]?",
                r"half (?:price|off|the price)", r"bogo", r"buy one", r"two for one", r"double (?:data|the)",
                r"unlimited", r"another (?:discount|offer|deal|month|year)",
                r"additional (?:discounts?|offers?|savings|months?|data|perks?|lines?|credit)",
                r"more (?:savings|discounts?|off)", r"new (?:phone|device|line)", r"perks?", r"price (?:lock|freeze)",
                r"fees?", r"penalty", r"surcharge", r"activation", r"early termination", r"cancell?ation",
                r"auto-?pay", r"paperless", r"refer(?:ral)? a friend", r"referrals?", r"terms and conditions",
                r"conditions apply", r"if you (?:sign|renew|commit|switch|add|enable|upgrade|refer|extend)")
"""Other offers, fees and conditions: never in the facts."""
DISCOUNT_WORDS = (r"discount(?:s|ed)?", r"savings?", r"save", r"deals?", r"promo(?:tion)?s?", r"reduced",
                  r"reductions?", r"off your", r"offers?", r"cheaper", r"lower (?:your )?(?:bill|price|rate)")
"""Words of a discount: a second offer when the offer is none."""

STOP_WORDS = {"en": frozenset(
    "the and to of in for on with at by from about as into like through after over between out up down off "
    "you your yours we our ours us it its this that these those is are was were be been being am have has had "
    "do does did will would can could should may might shall must not no all any some more most other such "
    "only own same so than too very just also if or but because while how what when where who which why "
    "there here they them their he she his her him i me my let know thank thanks please any time help "
    "next each every".split())}
"""Function words per language; a message in that language has at least MIN_STOP_SHARE of its words among them."""
MIN_STOP_SHARE, MIN_WORDS = 0.25, 6
"""Least share of function words, and the fewest words for the share to be judged."""
FOREIGN_WORDS = frozenset(
    "merci bonjour bonsoir salut vous votre nous avec sommes êtes mois facture réduction gracias hola buenos "
    "buenas usted ustedes nuestro nuestra por para meses factura descuento danke hallo guten und nicht mit für "
    "ihre wir sehr bitte vielen monate rechnung rabatt ciao grazie mesi sconto obrigado obrigada olá você "
    "desconto".split())
"""Common words of other languages that English never uses (French, Spanish, German, Italian, Portuguese)."""

# numbers as words, up to the millions; "one" and "a" count only inside a duration
_UNITS = dict(zip("two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
                  "seventeen eighteen nineteen".split(), range(2, 20)))
_TENS = dict(zip("twenty thirty forty fifty sixty seventy eighty ninety".split(), range(20, 100, 10)))
_BIG = {"hundred": 100, "thousand": 1000, "million": 10**6, "dozen": 12}
_NUMBER_WORD = "|".join(sorted([*_UNITS, *_TENS, *_BIG], key=len, reverse=True))
_NUM = rf"\d[\d,]*(?:\.\d+)?|(?:{'|'.join(_TENS)})-(?:one|{'|'.join(list(_UNITS)[:8])})|{_NUMBER_WORD}|one|a|an|half a"
# a duration is the offer term when a preposition leads it ("for the next 12 months") or a word of the offer
# follows it ("a 12-month discount"); "$80 a month" is a rate, not a duration
_FOR = re.compile(r"(?i)\b(?:for|over|during|throughout|across)\s+(?:the\s+|a\s+)?"
                  r"(?:(?:next|coming|following|first)\s+)?(?:full\s+|whole\s+)?$")
_NEXT = re.compile(r"(?i)\b(?:next|coming|following|first)\s+(?:full\s+|whole\s+)?$")
_AFTER = re.compile(r"(?i)[\s-]*(?:long\s+)?(?:of\s+)?"
                    r"(?:discounts?|offers?|deals?|savings?|reductions?|promotions?|terms?|price|programs?|programmes?|"
                    r"periods?|plans?|off)\b")
_DURATION = re.compile(rf"(?i)\b(?P<num>{_NUM})[\s-]+(?:full\s+|whole\s+)?(?P<unit>days?|weeks?|months?|years?|yrs?)\b")
_NEXT_YEAR = re.compile(r"(?i)\b(?:for|over)\s+the\s+(?:next|coming|following)\s+(?P<unit>year|month)\b")
_NUMBER_WORDS = re.compile(rf"(?i)\b(?:{_NUMBER_WORD})\b")
_AMOUNT = re.compile(rf"(?i)(?P<sym>[{re.escape(_SYMBOLS)}])\s?(?P<num>\d[\d,]*(?:\.\d+)?)"
                     rf"|(?P<num2>\d[\d,]*(?:\.\d+)?)\s?(?P<word>{'|'.join((*CURRENCY_WORDS, *OTHER_CURRENCIES))})\b")
_PERCENT = re.compile(r"(?i)\d+(?:[.,]\d+)?\s*(?:%|per ?cent)")
_CURRENCY_ANY = re.compile(rf"[{re.escape(_SYMBOLS.replace(CURRENCY, ''))}]|(?i:\b(?:{'|'.join(OTHER_CURRENCIES)})\b)")
_DATES = re.compile(rf"(?i)\b(?:{'|'.join(WEEKDAYS)}|{'|'.join(RELATIVE_DATES)})(?![\w])")
_MONTH = re.compile(rf"\b(?:{'|'.join(m.capitalize() for m in MONTHS)})\b\.?")
_SECOND = re.compile(rf"(?i)\b(?:{'|'.join(SECOND_OFFER)})\b")
_DISCOUNT = re.compile(rf"(?i)\b(?:{'|'.join(DISCOUNT_WORDS)})\b|%")
_LETTERS = re.compile(r"[^\W\d_]+(?:['\u2019\-][^\W\d_]+)*")
_NON_LATIN = re.compile(r"[^\W\d_A-Za-z\u00C0-\u024F\u1E00-\u1EFF]")
_DIGITS = re.compile(r"\d[\d,]*(?:\.\d+)?")
_SENTENCE_END = ".!?:;\u2026\u2014\u2013-\n"
MARK = "\x00"
"""Stands in for the brand (and, put there by the shield, the customer's own name): neither is a proper noun."""


@dataclass(frozen=True)
class Claims:
    """What one text states: the kinds it fails whatever the facts, and what it needs of the row's facts."""

    failed: frozenset[str]
    """Kinds of GROUNDING failed by the text alone."""
    term: bool
    """States the offer term ("for the next 12 months", "a 12-month discount"): true only when there is an offer."""
    term_or_tenure: bool
    """States OFFER_TERM_MONTHS after a plain "for" ("for 12 months"): the offer's term, or the customer's tenure."""
    discount: bool
    """Speaks of a discount: a second offer when the offer is none."""
    facts: tuple[tuple[str, float], ...] = ()
    """("months", m): a duration that must be the tenure; ("amount", x) or ("number", x): charges or tenure."""


def read_claims(text: str, language: str = "en") -> Claims:
    """The claims of one message whose own name and brand are masked by control characters."""
    text = text.replace("\u2019", "'")
    failed = set()
    if not _in_language(text, language):
        failed.add("language")
    if _SECOND.search(text):
        failed.add("second_offer")
    if _proper_nouns(text, STOP_WORDS[language]):
        failed.add("proper_nouns")
    rest = _PERCENT.sub(" ", text)  # the percentage is the offer rule's
    dates = [m for m in _MONTH.finditer(rest) if not _starts_sentence(rest, m.start()) or _number_near(rest, m)]
    if dates or _DATES.search(rest):
        failed.add("dates")
        rest = _DATES.sub(" ", rest)  # counted once, as a date
    term, term_or_tenure, facts, wrong = _numbers(rest)
    if wrong:
        failed.add("numbers")
    return Claims(frozenset(failed), term, term_or_tenure, bool(_DISCOUNT.search(text)), tuple(facts))


def grounding_failures(codes: np.ndarray, distinct: list[str], pct: np.ndarray, tenure: np.ndarray,
                       charges: np.ndarray, brand: str, language: str = "en") -> dict[str, np.ndarray]:
    """Per kind of GROUNDING, True where the row fails it.

    Each row's text is `distinct[codes[i]]`, its own name already masked by a control character; the brand is
    masked here. The facts are the row's offer fraction, tenure (months) and monthly charges (NaN where the prompt
    did not give them).
    """
    claims = [read_claims(t.replace(brand, MARK), language) for t in distinct]  # few: wordings, not names
    fail = {kind: np.array([kind in c.failed for c in claims], dtype=bool)[codes] for kind in GROUNDING}
    term = np.array([c.term for c in claims], dtype=bool)[codes]
    term_or_tenure = np.array([c.term_or_tenure for c in claims], dtype=bool)[codes]
    fail["numbers"] |= (term | (term_or_tenure & (tenure != OFFER_TERM_MONTHS))) & (pct <= 0)
    fail["second_offer"] |= np.array([c.discount for c in claims], dtype=bool)[codes] & (pct <= 0)
    for i in np.flatnonzero(np.array([bool(c.facts) for c in claims], dtype=bool)[codes]):
        fail["numbers"][i] |= not _supported(claims[codes[i]].facts, pct[i], tenure[i], charges[i])
    return fail


def _supported(facts, pct: float, tenure: float, charges: float) -> bool:
    """True when every fact-dependent claim is the row's tenure or charges (or its offer's share of them)."""
    amounts = [charges, charges * pct, charges * (1 - pct)]
    for what, value in facts:
        if what == "months" and value != tenure:
            return False
        if what == "amount" and not any(abs(value - a) < 0.005 for a in amounts):
            return False
        if what == "number" and value != tenure and abs(value - charges) >= 0.005:
            return False
    return True


def _in_language(text: str, language: str) -> bool:
    if language not in STOP_WORDS:
        raise ValueError(f"no language check for language={language!r}: known {sorted(STOP_WORDS)}")
    if _NON_LATIN.search(text):
        return False
    words = [w.lower() for w in _LETTERS.findall(text)]
    if not FOREIGN_WORDS.isdisjoint(words):
        return False
    return len(words) < MIN_WORDS or sum(w in STOP_WORDS[language] for w in words) >= MIN_STOP_SHARE * len(words)


def _proper_nouns(text: str, function_words: frozenset[str]) -> list[str]:
    """Capitalised words inside a sentence, CamelCase and ALL-CAPS words, none of them ordinary ("The", "Your" in
    a sign-off), or a date."""
    found = []
    for m in _LETTERS.finditer(text):
        word = m.group()
        lower = word.lower()
        if word in ALLOWED_CAPS or lower in function_words or lower in MONTHS or lower in WEEKDAYS:
            continue
        inner = any(c.isupper() for c in word[1:])
        if inner or (word[0].isupper() and not _starts_sentence(text, m.start())):
            found.append(word)
    return found


def _starts_sentence(text: str, at: int) -> bool:
    before = text[:at].rstrip(" \t\"'\u201c\u2018(")
    return not before or before[-1] in _SENTENCE_END


def _number_near(text: str, m: re.Match) -> bool:
    return bool(re.search(r"\d", text[max(0, m.start() - 4):m.end() + 4]))


def _numbers(text: str) -> tuple[bool, bool, list[tuple[str, float]], bool]:
    """(term stated, term or tenure stated, fact-dependent claims, a number no fact can support) of a text without
    percentages and dates."""
    facts, wrong, term, term_or_tenure = [], bool(_CURRENCY_ANY.search(text)), False, False
    amounts = list(_AMOUNT.finditer(text))
    for m in amounts:
        if (m["sym"] or CURRENCY) == CURRENCY and (m["word"] or CURRENCY_WORDS[0]).lower() in CURRENCY_WORDS:
            facts.append(("amount", float((m["num"] or m["num2"]).replace(",", ""))))
    text = _AMOUNT.sub(" ", text) if amounts else text
    durations = [(m["unit"], 1.0, True, True) for m in _NEXT_YEAR.finditer(text)]
    text = _NEXT_YEAR.sub(" ", text) if durations else text
    spans = list(_DURATION.finditer(text))
    for m in spans:
        lead = _FOR.search(text, max(0, m.start() - 40), m.start())
        future = bool(_NEXT.search(text, max(0, m.start() - 20), m.start()) or _AFTER.match(text, m.end()))
        if lead or future or m["num"].lower() not in ("a", "an", "half a"):
            durations.append((m["unit"], _value(m["num"]), bool(lead) or future, future))
    for unit, number, in_term, future in durations:
        months = {"month": number, "year": number * 12, "yr": number * 12}.get(unit.lower().rstrip("s"))
        if months is None or (future and months != OFFER_TERM_MONTHS):
            wrong = True  # days and weeks (no fact is counted in them), or a term that is not the offer's
        elif months == OFFER_TERM_MONTHS and in_term:
            term, term_or_tenure = term or future, term_or_tenure or not future
        else:
            facts.append(("months", months))
    text = _DURATION.sub(" ", text) if spans else text
    facts += [("number", float(d.replace(",", ""))) for d in _DIGITS.findall(text)]
    facts += [("number", _value(w)) for w in _NUMBER_WORDS.findall(text)]
    return term, term_or_tenure, facts, wrong


def _value(word: str) -> float:
    """A number written in digits or words ("12", "twelve", "twenty-four", "a", "half a")."""
    word = word.lower()
    if word[0].isdigit():
        return float(word.replace(",", ""))
    if word in ("a", "an", "one"):
        return 1.0
    if word == "half a":
        return 0.5
    tens, _, unit = word.partition("-")
    return float(_TENS[tens] + _UNITS.get(unit, 1)) if unit else float(  # the unit "one" is the one not in _UNITS
        _UNITS.get(word) or _TENS.get(word) or _BIG[word])
