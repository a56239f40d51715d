"""RLHF data: parsing of the public preference formats, the OASST1 tree, retention records and the 80/10/10 split."""
import numpy as np
import pandas as pd
import pytest

from retention.rlhf import data
from retention.rlhf.ppo_text import shield_pass

SHIELD_FAILURES = {"pressure", "false_promise", "profanity", "link", "leak", "wrong_name", "no_name", "wrong_offer",
                   "too_short", "too_long", "markup"}
"""Kinds of bad message the shield itself must reject (rude and off-brand ones are the reward model's job)."""


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def test_hh_pairs_share_the_dialogue_and_differ_in_the_last_reply():
    rows = [{"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help me\n\nAssistant: Sure, how?",
             "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help me\n\nAssistant: No."},
            {"chosen": "\n\nHuman: a\n\nAssistant: same",  # no preference
             "rejected": "\n\nHuman: a\n\nAssistant: same"},
            {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"}]  # prompts differ
    (pair,) = data.hh_pairs(rows)
    assert pair["prompt"] == [user("hi"), assistant("hello"), user("help me")]
    assert pair["chosen"] == [assistant("Sure, how?")] and pair["rejected"] == [assistant("No.")]
    assert pair["source"] == "hh_harmless" and pair["group"] == "hh-0"


def test_shp_pairs_follow_the_label():
    rows = [{"post_id": "p1", "history": "HUMAN: why?\nASSISTANT: because\nHUMAN: really?", "human_ref_A": "A",
             "human_ref_B": "B", "labels": 1},
            {"post_id": "p2", "history": "HUMAN: q", "human_ref_A": "A", "human_ref_B": "B", "labels": 0}]
    first, second = data.shp_pairs(rows)
    assert first["prompt"] == [user("why?"), assistant("because"), user("really?")]
    assert (first["chosen"][0]["content"], first["rejected"][0]["content"]) == ("A", "B")
    assert (second["chosen"][0]["content"], second["rejected"][0]["content"]) == ("B", "A")


def oasst_tree():
    def m(mid, parent, role, text, rank=None, tree="t1"):
        return {"message_id": mid, "parent_id": parent, "role": role, "text": text, "rank": rank,
                "message_tree_id": tree}

    return [m("p1", None, "prompter", "Question?"),
            m("a1", "p1", "assistant", "Best answer", 0), m("a2", "p1", "assistant", "Second", 1),
            m("a3", "p1", "assistant", "Third", 2),
            m("p2", "a1", "prompter", "Follow-up?"), m("a4", "p2", "assistant", "Only reply"),
            m("a5", "gone", "assistant", "Parent was not English", 0, "t2")]


def test_oasst_sft_takes_the_best_reply_with_its_thread():
    rows = data.oasst_sft(oasst_tree())
    assert [r["completion"][0]["content"] for r in rows] == ["Best answer", "Only reply"]
    assert rows[1]["prompt"] == [user("Question?"), assistant("Best answer"), user("Follow-up?")]
    assert {r["group"] for r in rows} == {"t1"}


def test_oasst_ranked_pairs_are_every_better_worse_pair_of_siblings():
    rows = data.oasst_ranked_pairs(oasst_tree())
    got = {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows}
    assert got == {("Best answer", "Second"), ("Best answer", "Third"), ("Second", "Third")}
    assert all(r["prompt"] == [user("Question?")] and r["source"] == "oasst_ranked" for r in rows)


def test_split_is_80_10_10_by_group_and_deterministic():
    groups = [f"g{i:02d}" for i in range(20)] * 3  # each group three times
    where = data.split_groups(groups, seed=42)
    assert sorted(where.values()).count("train") == 16 and list(where.values()).count("test") == 2
    assert where == data.split_groups(list(reversed(groups)), seed=42)  # order of rows does not matter
    assert where != data.split_groups(groups, seed=7)
    rows = [{"group": g, "i": i} for i, g in enumerate(groups)]
    splits = data.split_rows(rows, "group", seed=42)
    assert [len(splits[s]) for s in data.SPLITS] == [48, 6, 6]
    seen = [{r["group"] for r in splits[s]} for s in data.SPLITS]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])


@pytest.mark.parametrize("name", ["Bo", "Maria-José O'Neill", "A" * 30, "valued customer"])
def test_every_good_message_passes_the_shield_for_any_name_and_offer(name):
    good = [m for m in data.read_messages() if m["kind"] == "good"]
    for pct in ("5%", "7.5%", "10%", "15%", ""):
        texts = [data.fill(m["text"], name, pct, "Zoey") for m in good if (m["offer"] == "discount") == bool(pct)]
        ok = shield_pass(texts, [name] * len(texts), [pct] * len(texts))
        assert ok.all(), [t for t, passed in zip(texts, ok) if not passed]


def test_shield_violating_bad_messages_fail_the_shield():
    bad = [m for m in data.read_messages() if m["kind"] == "bad" and m["why"] in SHIELD_FAILURES]
    assert len(bad) >= 20
    for m in bad:
        pct = "10%" if m["offer"] == "discount" else ""
        assert not shield_pass([data.fill(m["text"], "Bo", pct, "Zoey")], ["Bo"], [pct])[0], m


def prompt(customer_id, name, channel, pct_text):
    return {"customer_id": customer_id, "name": name, "channel": channel, "pct_text": pct_text,
            "prompt": f"Message for {name}"}


def test_retention_sft_and_pairs_fit_the_offer_and_name():
    prompts = [prompt("c1", "Ana", "sms", "10%"), prompt("c2", "Liam", "email", "")] * 10
    messages = data.read_messages()
    for row, p in zip(data.retention_sft(prompts, messages, seed=1), prompts):
        assert row["prompt"] == [user(p["prompt"])] and row["group"] == p["customer_id"]
        assert shield_pass([row["completion"][0]["content"]], [p["name"]], [p["pct_text"]])[0]
    pairs = data.retention_pairs(prompts, messages, seed=1)
    chosen = [r["chosen"][0]["content"] for r in pairs]
    assert shield_pass(chosen, [p["name"] for p in prompts], [p["pct_text"] for p in prompts]).all()
    assert all(r["chosen"] != r["rejected"] for r in pairs)


def test_retention_prompts_use_the_prompt_builder_with_an_offer_level():
    customers = pd.DataFrame({
        "customer_id": ["c1", "c2", "c3"], "name": ["Ana <b>", "Liam", "Zoey"], "channel": ["sms", "email", "app"],
        "tenure_months": [2, 40, 12], "plan": ["fiber_optic", "dsl", "none"],
        "contract": ["month_to_month", "two_year", "one_year"],
        "payment_method": ["electronic_check", "credit_card", "mailed_check"],
        "monthly_charges": [90.5, 50.0, 20.0], "tech_support": [False, True, False]})
    rows = data.retention_prompts(customers, seed=3)
    assert [r["name"] for r in rows] == ["Ana", "Liam", "Zoey"]
    for r in rows:
        assert r["offer_level"] in range(4) and r["offer_pct"] == data.OFFER_PCTS[r["offer_level"]]
        assert r["pct_text"] == ("" if r["offer_level"] == 0 else f"{round(r['offer_pct'] * 100)}%")
        assert f'"name": "{r["name"]}"' in r["prompt"] and r["prompt"].endswith("Message:")
        assert (f"Offer exactly {r['pct_text']} off" in r["prompt"]) == (r["offer_level"] > 0)
    assert rows == data.retention_prompts(customers, seed=3)
    assert np.all([len(c) >= 1 for c in data.reason_codes(customers, np.random.default_rng(0))])
