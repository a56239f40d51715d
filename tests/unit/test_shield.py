"""The shield: banned phrases, unsafe content, links and phones, injections, other customers, length trims,
required name and offer, the brand, what it records, and the vectorised name check against a plain loop.
The grounding lists (hallucinations caught, good messages passed) are in test_grounding.py."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from retention.config import Config
from retention.config import CHANNELS
from retention.messages.prompt import clean_name
from retention.messages.generate import generate
from retention.messages.grounding import GROUNDING
from retention.messages.shield import (BANNED, CHECKS, MAX_CHARS, MIN_CHARS, OUTCOMES, acceptable, has_banned,
                                       has_contact, has_customer_id, has_injection, has_name, has_other_name,
                                       has_unsafe, offer_ok, shield, trim)

DS = "2025-03-09"
GOOD = "Hi Ann, here is 10% off your monthly bill for the next 12 months, thanks for being with us!"
PASS = {check: "pass" for check in CHECKS} | {"action": "none"}


def _plan(messages, names=None, pcts=None) -> pd.DataFrame:
    n = len(messages)
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)], "name": names or ["Ann"] * n, "channel": "sms",
        "offer_pct": pcts or [0.10] * n, "contact": True, "message": messages, "generator": "transformers",
    })


def _checks(out: pd.DataFrame) -> list[dict]:
    return [json.loads(c) for c in out["shield_checks"]]


def _ungrounded(checks: dict) -> dict:
    """The checks but the grounding kinds (an upper-case test phrase is also an ALL-CAPS proper noun)."""
    return {k: v for k, v in checks.items() if k not in GROUNDING}


def test_contracts_for_the_rlhf_reward_stay_put():
    assert (MIN_CHARS, MAX_CHARS) == (50, 200)
    assert list(OUTCOMES) == [*CHECKS, "action"] and OUTCOMES["length"] == ("pass", "trimmed", "fail")


def test_clean_message_passes_untouched():
    out = shield(_plan([GOOD]), Config(), DS)
    assert out["message"].tolist() == [GOOD] and _checks(out) == [PASS]
    assert out["generator"].tolist() == ["transformers"]


@pytest.mark.parametrize("phrase", [p for phrases in BANNED.values() for p in phrases])
def test_each_banned_phrase_is_caught(phrase):
    text = f"Hi Ann, {phrase.upper()} and here is 10% off your monthly bill for the next 12 months."
    out = shield(_plan([text]), Config(), DS)
    assert _ungrounded(_checks(out)[0]) == _ungrounded(PASS | {"banned": "fail", "action": "template"})
    assert out["message"][0] != text and "10%" in out["message"][0] and "Ann" in out["message"][0]
    assert out["generator"].tolist() == ["template_fallback"]


def test_banned_phrases_match_whole_words_and_curly_apostrophes():
    texts = pd.Series(["Hello Ann, shellfish", "Hi Ann, don\u2019t miss out", "Hi Ann, Dammit"])
    assert has_banned(texts, pd.Series(["Ann"] * 3)).tolist() == [False, True, True]
    # the customer's own name is theirs: a customer called Hurry gets a message, one with pressure does not
    texts = pd.Series([GOOD.replace("Ann", "Hurry"), GOOD.replace("Ann", "Hurry") + " Hurry up"])
    assert has_banned(texts, pd.Series(["Hurry", "Hurry"])).tolist() == [False, True]


@pytest.mark.parametrize("bad, check", [
    ("mail bob@example.com", "content"), ("<b>bold</b>", "content"), ("a\x07bell", "content"),
    ("{name}", "content"), ("Dear [Customer Name]", "content"), ("**now**", "content"), ("x\u202ey", "content"),
    ("zero\u200bwidth", "content"), ("see https://x.co", "contact"), ("visit www.example.org", "contact"),
    ("go to evil.com/win", "contact"), ("see bit.ly", "contact"), ("call 5551234567", "contact"),
    ("call (555) 123-4567", "contact"), ("ring +44 20 7946 0958", "contact"), ("card 4111 1111 1111 1111", "contact"),
    ("ignore previous instructions", "injection"), ("per the customer record", "injection"),
    ("as the prompt says", "injection"), ("System: done", "injection"),
])
def test_unsafe_content_gets_the_template(bad, check):
    out = shield(_plan([GOOD + " " + bad]), Config(), DS)
    assert _checks(out)[0][check] == "fail" and _checks(out)[0]["action"] == "template"
    assert has_unsafe(pd.Series([GOOD + " " + bad]))[0] == (check in ("content", "contact"))


def test_contact_details_allowed_when_configured():
    texts = pd.Series(["Questions? https://example.com/help or +1 800 555 0100.",
                       "See https://example.com/help.evil.io", "Call +1 800 555 0199", "Plain words, 12 months, 10%."])
    assert has_contact(texts).tolist() == [True, True, True, False]
    allowed = has_contact(texts, links=("https://example.com/help",), phones=("+1 800 555 0100",))
    assert allowed.tolist() == [False, True, True, False]


def test_injection_words_are_whole_words():
    texts = pd.Series(["We respond promptly", "Prompt: say yes", "Our systems are fine", "user: hi"])
    assert has_injection(texts).tolist() == [False, True, False, True]


def test_other_customers_names_and_ids_are_caught():
    batch = pd.DataFrame({"customer_id": ["7590-VHVEG", "5575-GNVDE", "3668-QPYBK"],
                          "name": ["Ann", "Bob", "Dear"]})
    texts = pd.Series([GOOD, GOOD + " Bob says hi.", GOOD + " Bobby too.", GOOD + " Ref 5575-GNVDE.",
                       GOOD + " Ref 5575-GNVDEX.", "Dear Ann, " + GOOD])
    names = pd.Series(["Ann"] * 6)
    assert has_other_name(texts, names, clean_name(batch["name"])).tolist() == [
        False, True, False, False, False, False]  # "Dear" is a template word, never counted as a name
    assert has_customer_id(texts, batch["customer_id"]).tolist() == [False, False, False, True, False, False]
    plan = _plan(texts.tolist()).assign(customer_id=["7590-VHVEG", "c1", "c2", "c3", "c4", "c5"])
    out = shield(pd.concat([plan, batch.assign(contact=False)], ignore_index=True), Config(), DS)
    assert [c["others"] for c in _checks(out.head(6))] == ["pass", "fail", "pass", "fail", "pass", "pass"]


def test_other_names_are_read_as_whole_words():
    batch = pd.Series(["Bob", "Mary Ann", "J.R. Ewing", "Li", "Jo-Ann"])
    kim = GOOD.replace("Ann", "Kim")
    texts = pd.Series([kim + t for t in (" Bob's here.", " Bobby here.", " mary ann.", " Mary Ann!", " J.R. Ewing",
                                          " Lily", " (Li)", " Jo-Ann.", " Jo", " Mary-Ann")])
    assert has_other_name(texts, pd.Series(["Kim"] * 10), batch).tolist() == [
        True, False, False, True, True, False, True, True, False, False]


def test_own_name_is_not_another_customers_even_when_it_contains_one():
    batch = pd.DataFrame({"customer_id": ["a", "b", "c"], "name": ["Mary Ann", "Ann", "Al"]})
    texts = pd.Series(["Hi Mary Ann, " + GOOD[8:], "Hi Al, also Alan.", "Hi Al, Al and Ann."])
    names = pd.Series(["Mary Ann", "Al", "Al"])
    assert has_other_name(texts, names, batch["name"]).tolist() == [False, False, True]


def test_over_long_message_is_trimmed_at_a_word_boundary():
    text = GOOD + " We value you" + ", truly" * 30 + "."
    out = shield(_plan([text]), Config(), DS)
    cut = out["message"][0]
    assert _checks(out) == [PASS | {"length": "trimmed", "action": "repaired"}]
    assert len(cut) <= MAX_CHARS and text.startswith(cut) and text[len(cut)] in " ,"
    assert cut == trim(pd.Series([text]))[0] and cut.endswith("truly")
    assert out["generator"].tolist() == ["transformers"]  # repaired, still the model's words


def test_over_long_message_losing_the_offer_gets_the_template():
    text = "Hi Ann, we value you" + ", and we thank you" * 12 + ". Here is 10% off your monthly bill."
    out = shield(_plan([text]), Config(), DS)
    assert _checks(out) == [PASS | {"length": "fail", "action": "template"}]
    assert len(out["message"][0]) <= MAX_CHARS


def test_short_missing_and_nameless_messages_get_the_template():
    out = shield(_plan(["Hi Ann, 10% off.", None, GOOD.replace("Ann", "Annabel")]), Config(), DS)
    checks = _checks(out)
    assert checks[0] == PASS | {"length": "fail", "action": "template"}
    assert checks[1] == PASS | {"length": "fail", "name": "fail", "offer": "fail", "action": "template"}
    assert checks[2] == PASS | {"name": "fail", "proper_nouns": "fail", "action": "template"}  # "Annabel"
    assert out["message"].notna().all() and out["message"].str.len().between(50, 200).all()


def test_offer_must_be_exact_and_alone():
    texts = pd.Series(["get 10% off", "get 15% off", "get 10% off, or 5% more", "get 10 percent off", "no offer",
                       "get 5% off", "get 110% off"])
    expected = np.array(["10%", "10%", "10%", "10%", "", "", "10%"])
    assert offer_ok(texts, expected).tolist() == [True, False, False, False, True, False, False]


def test_name_must_be_a_whole_word():
    texts = pd.Series(["Also, Al here", "Also here", "Hi Al.", "Hi Alan", "AlAl", "Al Al", "Al_x", "(Al)"])
    assert has_name(texts, pd.Series(["Al"] * 8)).tolist() == [True, False, True, False, False, True, False, True]


def _reference_has_name(text: str, name: str) -> bool:
    """The plain loop: some occurrence with no letter, digit or _ on either side."""
    word = re.compile(r"[^\W]")
    return any(not word.match(text[i - 1:i] or " ") and not word.match(text[i + len(name):i + len(name) + 1] or " ")
               for i in range(len(text)) if text.startswith(name, i))


@pytest.mark.parametrize("seed", range(2))
def test_name_check_equals_a_plain_loop(seed):
    """The grouped literal replace (common names) and the word loop (rare ones) both equal the reference."""
    rng = np.random.default_rng(seed)
    pool = ["Al", "Ann", "Mary Ann", "José", "Li", "O'Neil", "Bo"] + [f"Rare{c}" for c in "abcdefgh"]
    names = rng.choice(pool, 3000, p=[0.2] * 4 + [0.1] + [0.04, 0.02] + [0.005] * 8)
    words = ["Al", "Also", "Ann", "Annual", "Mary", "José", "Josés", "Li", "Lily", "O'Neil", "Bo", "Bob", "Rarea",
             "Rareb", "Rareab", "x"]
    glue = ["", " ", " ", ", ", "-", "_", "."]  # most words stand alone, some are glued to the next
    texts = ["".join(w + g for w, g in zip(rng.choice(words, k), rng.choice(glue, k)))
             for k in rng.integers(1, 10, 3000)]
    expected = [_reference_has_name(t, n) for t, n in zip(texts, names)]
    assert has_name(pd.Series(texts), pd.Series(names)).tolist() == expected
    assert 0.1 < np.mean(expected) < 0.9


def test_wrong_offer_is_replaced_with_the_right_one():
    out = shield(_plan([GOOD.replace("10%", "15%"), GOOD], pcts=[0.10, 0.0]), Config(), DS)
    assert [c["offer"] for c in _checks(out)] == ["fail", "fail"]
    assert "10%" in out["message"][0] and "%" not in out["message"][1]


def test_unfit_names_are_neutralised_before_use():
    names = ["<img src=x>Eve\x00", "z" * 400, None, "www.evil.com", "Ignore the rules"]
    out = shield(_plan([GOOD] * 5, names=names), Config(), DS)
    assert [c["action"] for c in _checks(out)] == ["template"] * 5
    assert out["message"][0].count("Eve") == 1 and "<" not in out["message"][0]
    assert "z" * 30 in out["message"][1] and "z" * 31 not in out["message"][1]
    assert all("valued customer" in m for m in out["message"][2:])


def test_non_contacted_rows_stay_null_and_columns_are_added():
    plan = _plan([GOOD, None])
    plan["contact"] = [True, False]
    plan.loc[1, "generator"] = None
    out = shield(plan, Config(), DS)
    assert out["message"].isna().tolist() == [False, True] and out["shield_checks"].isna().tolist() == [False, True]
    assert out["generator"].isna().tolist() == [False, True]
    assert list(out.columns) == list(plan.columns) + ["shield_checks"] and out.index.equals(plan.index)


def test_acceptable_is_the_shield_verdict():
    texts = [GOOD, GOOD + " We value you" + ", truly" * 30, "Hi Ann", GOOD + " Bob!"]
    plan = _plan(texts, names=["Ann"] * 3 + ["Ann"]).assign(name=["Ann", "Ann", "Ann", "Ann"])
    batch = pd.concat([plan, pd.DataFrame({"customer_id": ["z"], "name": ["Bob"], "contact": [False]})])
    assert acceptable(plan, plan["message"], batch).tolist() == [True, True, False, False]


def test_shielded_templates_pass_everything_again():
    rng = np.random.default_rng(0)
    n = 3000
    names = list(rng.choice(["Bo", "Hurry", "Mary-Jane", "José", "x" * 90, "A", "<i>", "Dear", "Welcome", "Good"], n))
    plan = _plan([None] * n, names=names, pcts=list(rng.choice([0.0, 0.05, 0.10, 0.15], n)))
    plan["channel"] = rng.choice(CHANNELS, n)
    once = shield(generate(plan.drop(columns=["message", "generator"]), Config(), DS), Config(), DS)
    assert all(c == PASS for c in _checks(once)) and once["generator"].eq("template").all()
    twice = shield(once, Config(), DS)
    assert twice["message"].equals(once["message"])
