"""The shield: banned phrases, unsafe content, length trims, required name and offer, and what it records."""
import json

import numpy as np
import pandas as pd
import pytest

from retention.config import Config
from retention.messages.generate import CHANNELS, generate
from retention.messages.shield import BANNED, MAX_CHARS, has_banned, has_name, offer_ok, shield, trim

DS = "2025-03-09"
GOOD = "Hi Ann, here is 10% off your monthly bill for the next 12 months, thanks for being with us!"
PASS = {"banned": "pass", "content": "pass", "length": "pass", "name": "pass", "offer": "pass", "action": "none"}


def _plan(messages, names=None, pcts=None) -> pd.DataFrame:
    n = len(messages)
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)], "name": names or ["Ann"] * n, "channel": "sms",
        "offer_pct": pcts or [0.10] * n, "contact": True, "message": messages,
    })


def _checks(out: pd.DataFrame) -> list[dict]:
    return [json.loads(c) for c in out["shield_checks"]]


def test_clean_message_passes_untouched():
    out = shield(_plan([GOOD]), Config(), DS)
    assert out["message"].tolist() == [GOOD] and _checks(out) == [PASS]


@pytest.mark.parametrize("phrase", [p for phrases in BANNED.values() for p in phrases])
def test_each_banned_phrase_is_caught(phrase):
    text = f"Hi Ann, {phrase.upper()}: here is 10% off your monthly bill for the next 12 months."
    out = shield(_plan([text]), Config(), DS)
    assert _checks(out) == [PASS | {"banned": "fail", "action": "template"}]
    assert out["message"][0] != text and "10%" in out["message"][0] and "Ann" in out["message"][0]


def test_banned_phrases_match_whole_words_and_curly_apostrophes():
    texts = pd.Series(["Hello Ann, shellfish", "Hi Ann, don\u2019t miss out", "Hi Ann, Dammit"])
    assert has_banned(texts, pd.Series(["Ann"] * 3)).tolist() == [False, True, True]
    # the customer's own name is theirs: a customer called Hurry gets a message, one with pressure does not
    texts = pd.Series([GOOD.replace("Ann", "Hurry"), GOOD.replace("Ann", "Hurry") + " Hurry up"])
    assert has_banned(texts, pd.Series(["Hurry", "Hurry"])).tolist() == [False, True]


@pytest.mark.parametrize("bad", ["see https://x.co", "mail bob@example.com", "call 5551234567", "<b>bold</b>",
                                 "a\x07bell", "{name}"])
def test_unsafe_content_gets_the_template(bad):
    out = shield(_plan([GOOD + " " + bad]), Config(), DS)
    assert _checks(out) == [PASS | {"content": "fail", "action": "template"}]


def test_over_long_message_is_trimmed_at_a_word_boundary():
    text = GOOD + " We value you" + ", truly" * 30 + "."
    out = shield(_plan([text]), Config(), DS)
    cut = out["message"][0]
    assert _checks(out) == [PASS | {"length": "trimmed", "action": "repaired"}]
    assert len(cut) <= MAX_CHARS and text.startswith(cut) and text[len(cut)] in " ,"
    assert cut == trim(pd.Series([text]))[0] and cut.endswith("truly")


def test_over_long_message_losing_the_offer_gets_the_template():
    text = "Hi Ann, we value you" + ", truly" * 30 + ". Here is 10% off your monthly bill."
    out = shield(_plan([text]), Config(), DS)
    assert _checks(out) == [PASS | {"length": "fail", "action": "template"}]
    assert len(out["message"][0]) <= MAX_CHARS


def test_short_missing_and_nameless_messages_get_the_template():
    out = shield(_plan(["Hi Ann, 10% off.", None, GOOD.replace("Ann", "Annabel")]), Config(), DS)
    checks = _checks(out)
    assert checks[0] == PASS | {"length": "fail", "action": "template"}
    assert checks[1] == PASS | {"length": "fail", "name": "fail", "offer": "fail", "action": "template"}
    assert checks[2] == PASS | {"name": "fail", "action": "template"}
    assert out["message"].notna().all() and out["message"].str.len().between(50, 200).all()


def test_offer_must_be_exact_and_alone():
    texts = pd.Series(["get 10% off", "get 15% off", "get 10% off, or 5% more", "get 10 percent off", "no offer",
                       "get 5% off"])
    expected = np.array(["10%", "10%", "10%", "10%", "", ""])
    assert offer_ok(texts, expected).tolist() == [True, False, False, False, True, False]


def test_name_must_be_a_whole_word():
    texts = pd.Series(["Also, Al here", "Also here", "Hi Al.", "Hi Alan"])
    assert has_name(texts, pd.Series(["Al"] * 4)).tolist() == [True, False, True, False]


def test_wrong_offer_is_replaced_with_the_right_one():
    out = shield(_plan([GOOD.replace("10%", "15%"), GOOD], pcts=[0.10, 0.0]), Config(), DS)
    assert [c["offer"] for c in _checks(out)] == ["fail", "fail"]
    assert "10%" in out["message"][0] and "%" not in out["message"][1]


def test_unfit_names_are_neutralised_before_use():
    names = ["<img src=x>Eve\x00", "z" * 400, None]
    out = shield(_plan([GOOD] * 3, names=names), Config(), DS)
    assert [c["action"] for c in _checks(out)] == ["template"] * 3
    assert out["message"][0].count("Eve") == 1 and "<" not in out["message"][0]
    assert "z" * 30 in out["message"][1] and "z" * 31 not in out["message"][1]
    assert "valued customer" in out["message"][2]


def test_non_contacted_rows_stay_null_and_columns_are_added():
    plan = _plan([GOOD, None])
    plan["contact"] = [True, False]
    out = shield(plan, Config(), DS)
    assert out["message"].isna().tolist() == [False, True] and out["shield_checks"].isna().tolist() == [False, True]
    assert list(out.columns) == list(plan.columns) + ["shield_checks"]


def test_shielded_templates_pass_everything_again():
    rng = np.random.default_rng(0)
    n = 3000
    names = list(rng.choice(["Bo", "Hurry", "Mary-Jane", "José", "x" * 90, "A", "<i>"], n))
    plan = _plan([None] * n, names=names, pcts=list(rng.choice([0.0, 0.05, 0.10, 0.15], n)))
    plan["channel"] = rng.choice(CHANNELS, n)
    once = shield(generate(plan.drop(columns="message"), Config(), DS), Config(), DS)
    assert all(c == PASS for c in _checks(once))
    twice = shield(once, Config(), DS)
    assert twice["message"].equals(once["message"])
