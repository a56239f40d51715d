"""The decision rule: holdout hash, hard rules, expected value, the budget pass, and the greedy plan."""
import numpy as np
import pandas as pd
import pytest

from retention.config import CHANNELS, Config
from retention.deciding import rules
from retention.deciding.rules import (REASONS, accept_probs, budget_pass, eligibility, expected_values, message_costs,
                                      offer_costs, reason_codes, reason_column, violations, text_column)
from tests.reference import budget_pass_reference as _budget_pass_reference
from retention.deciding.decide import decide_plan as decide
from retention.deciding.decide import decide_rows
from retention.deciding.greedy import decide_greedy
from retention.hashing import holdout_mask, stable_hash

M64 = (1 << 64) - 1


def _hash_reference(s: str) -> int:
    """FNV-1a 64 over UTF-8 bytes, then the MurmurHash3 finaliser, one string at a time."""
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & M64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & M64
    return h ^ (h >> 33)


def _day(n: int, seed: int = 0) -> pd.DataFrame:
    """A random scored day: history, suppression and scores as the decide stage receives them."""
    rng = np.random.default_rng(seed)
    accept = np.sort(rng.uniform(0, 0.6, (n, 4)), axis=1)  # richer offers are accepted more often
    return pd.DataFrame({
        "customer_id": [f"{i:04d}-{seed}" for i in range(n)],
        "customer_value": rng.uniform(200, 1500, n).round(2),
        "churn_risk": rng.uniform(0, 0.9, n),
        **{f"accept_prob_{k}": accept[:, k] for k in range(4)},
        "suppressed": rng.random(n) < 0.05,
        "days_since_contact": rng.choice([1, 3, 6, 7, 8, 30, 999], n),
        "contacts_in_window": rng.integers(0, 5, n),
        "channel": np.asarray(CHANNELS)[rng.integers(0, len(CHANNELS), n)],
    })


# holdout


def test_stable_hash_equals_reference_loop():
    ids = ["", "a", "7590-VHVEG", "José", "名前", "x" * 300, "c1", "c10"]
    assert stable_hash(ids).tolist() == [_hash_reference(s) for s in ids]


def test_stable_hash_pinned_values():
    # pinned: a change here moves customers in and out of the holdout
    assert stable_hash(["7590-VHVEG", "José", ""]).tolist() == [
        12972476930549041867, 9085098722961635665, 17280346270528514342]


def test_stable_hash_takes_any_string_container():
    ids = ["SYN-0000001", "José", "", "x" * 40, "c10"]
    want = [_hash_reference(s) for s in ids]
    series = pd.Series(["pad"] + ids, dtype="str").iloc[1:]  # an Arrow array with an offset
    chunked = pd.concat([pd.Series(ids[:2], dtype="str"), pd.Series(ids[2:], dtype="str")], ignore_index=True)
    for strings in (ids, np.array(ids), np.array(ids, dtype=object), series, chunked):
        assert stable_hash(strings).tolist() == want
    assert stable_hash([7, 12]).tolist() == stable_hash(["7", "12"]).tolist()  # as strings, like the id column
    assert stable_hash([]).dtype == np.uint64 and stable_hash([]).shape == (0,)
    with pytest.raises(ValueError, match="missing"):
        stable_hash(["c1", None])


def test_holdout_share_and_stability():
    ids = pd.Series([f"{i:07d}-CUST" for i in range(100_000)])
    mask = holdout_mask(ids, 0.10)
    assert abs(mask.mean() - 0.10) < 0.005  # 5 standard deviations
    # the same id gets the same answer in any batch, order or day
    sample = ids.sample(1000, random_state=1)
    assert (holdout_mask(sample, 0.10) == mask[sample.index]).all()
    assert not (holdout_mask(ids, 0.05) & ~mask).any()  # a smaller share is a subset
    assert not holdout_mask(ids, 0.0).any()


# hard rules


def test_eligibility_reasons():
    day = pd.DataFrame({
        # c20 is in the 10 % holdout, c0-c9 are not (see the pinned hash)
        "customer_id": ["c0", "c1", "c20", "c20", "c2", "c3", "c4", "c5"],
        "suppressed": [False, True, True, False, False, False, False, False],
        "days_since_contact": [999, 999, 999, 3, 6, 7, 999, 2],
        "contacts_in_window": [0, 0, 0, 3, 0, 1, 2, 2],  # c4: a contact and its follow-up would make 4 > 3
    })
    eligible, reason = eligibility(day, Config())
    assert reason.tolist() == ["", "suppressed", "suppressed", "holdout", "cooldown", "", "fatigue", "cooldown"]
    assert eligible.tolist() == [True, False, False, False, False, True, False, False]


def test_reason_codes_and_column():
    day = pd.DataFrame({"suppressed": [True, False, False, False, True], "days_since_contact": [1, 1, 3, 999, 999],
                        "contacts_in_window": [9, 9, 0, 5, 0]})
    codes = reason_codes(day, Config(), np.array([True, True, False, False, False]))
    assert codes.dtype == np.uint8
    assert [REASONS[c] for c in codes] == ["suppressed", "holdout", "cooldown", "fatigue", "suppressed"]
    column = reason_column(np.array([0, 5, 6, 7, 8], dtype=np.uint8))
    assert column.dtype == "str" and column.tolist() == ["", "contact", "budget", "low_value", "wait"]
    assert reason_column(np.zeros(0, np.uint8)).dtype == "str"


# value and cost


def test_expected_values_and_costs_exact():
    day = pd.DataFrame({"customer_id": ["c"], "channel": ["email"], "customer_value": [1000.0], "churn_risk": [0.5],
                        "accept_prob_0": [0.1], "accept_prob_1": [0.2], "accept_prob_2": [0.3], "accept_prob_3": [0.4]})
    cfg = Config(channel_cost=2.0)  # + 0.01 an email; efficacy 0.1/0.4/0.5/0.6, backfire 0.03
    # value * (risk * (a e - (1 - a) b) - a pct) - message:
    # 1000 * (0.5 * (0.01 - 0.027)) - 2.01, 1000 * (0.5 * (0.08 - 0.024) - 0.01) - 2.01,
    # 1000 * (0.5 * (0.15 - 0.021) - 0.03) - 2.01, 1000 * (0.5 * (0.24 - 0.018) - 0.06) - 2.01
    np.testing.assert_allclose(expected_values(day, cfg), [[-10.51, 15.99, 32.49, 48.99]])
    # the whole discount and two messages (the contact and a possible follow-up) are committed
    np.testing.assert_allclose(offer_costs(day, cfg), [[4.02, 54.02, 104.02, 154.02]])
    assert message_costs(day.assign(channel="phone"), cfg)[0] == 6.0


def test_accept_probs_of_rows():
    day = pd.DataFrame({f"accept_prob_{k}": np.arange(5) + k / 10 for k in range(4)})
    assert accept_probs(day).tolist() == [[i + k / 10 for k in range(4)] for i in range(5)]
    assert accept_probs(day, np.array([3, 0])).tolist() == [[3.0, 3.1, 3.2, 3.3], [0.0, 0.1, 0.2, 0.3]]


# budget pass


def test_budget_pass_hand_example():
    scores = np.array([2.0, 5.0, 1.0, 4.0, 3.0])
    costs = np.array([10.0, 60.0, 5.0, 50.0, 30.0])
    # by score: 60 taken (40 left), 50 skipped, 30 taken (10 left), 10 taken (0 left), 5 skipped
    assert budget_pass(scores, costs, 100.0).tolist() == [True, True, False, False, True]
    assert budget_pass(scores, costs, 0.0).tolist() == [False] * 5
    assert budget_pass(scores[:0], costs[:0], 100.0).tolist() == []


def test_budget_pass_fills_the_budget_exactly_across_segments(monkeypatch):
    monkeypatch.setattr(rules, "BUDGET_HEAD", 1)  # the first segment: the best two (the head and its cut)
    # 5 and 3 are taken in the first segment; in the next, 2 fits exactly (10 <= 10) and 3 no longer does
    assert budget_pass(np.array([4.0, 3.0, 2.0, 1.0]), np.array([5.0, 3.0, 2.0, 3.0]), 10.0).tolist() == \
        [True, True, True, False]


@pytest.mark.parametrize("head", [rules.BUDGET_HEAD, 1, 7, 100])
@pytest.mark.parametrize("seed", range(20))
def test_budget_pass_equals_reference_loop(seed, head, monkeypatch):
    monkeypatch.setattr(rules, "BUDGET_HEAD", head)  # sorted and passed in segments of head, 8 head, ...
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    scores = rng.normal(size=n).round(int(rng.integers(0, 3)))  # rounding makes ties
    costs = np.where(rng.random(n) < 0.3, 0.0, rng.exponential(rng.uniform(1, 100), n))
    if seed % 2:
        costs = costs.round()  # whole costs fill the budget exactly
    budget = float(rng.uniform(0, costs.sum()))
    mask = budget_pass(scores, costs, budget)
    assert (mask == _budget_pass_reference(scores, costs, budget)).all()
    assert costs[mask].sum() <= budget + 1e-9
    rank = rng.permutation(n)  # ties by a canonical rank instead of position
    assert (budget_pass(scores, costs, budget, rank) == _budget_pass_reference(scores, costs, budget, rank)).all()


def test_budget_pass_rejects_negative_costs():
    with pytest.raises(ValueError, match="non-negative"):
        budget_pass(np.ones(2), np.array([1.0, -1.0]), 10.0)


# decisions


def test_decide_greedy_hand_frame():
    day = pd.DataFrame({
        "customer_id": ["c0", "c1", "c20", "c2", "c3", "c4", "c5", "c6"],
        "customer_value": [1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 800.0, 1000.0],
        "churn_risk": [0.5, 0.5, 0.5, 0.5, 0.5, 0.0, 0.5, 0.5],
        "accept_prob_0": [0.1] * 8, "accept_prob_1": [0.2] * 8,
        "accept_prob_2": [0.3] * 8, "accept_prob_3": [0.4] * 8,
        "suppressed": [False, True, False, False, False, False, False, False],
        "days_since_contact": [999, 999, 999, 3, 999, 999, 999, 999],
        "contacts_in_window": [0, 0, 0, 0, 3, 0, 0, 0], "channel": "email",
    })
    # free messages, offers that save every acceptor, no backfire: EV_k = a_k * value * (risk - pct_k)
    cfg = Config(daily_budget=280.0, channel_costs=(0.0,) * 4, offer_efficacy=(1.0,) * 4, contact_backfire=0.0)
    plan = decide_greedy(day, cfg)
    # best level 3 for all: c0 and c6 EV 0.4*1000*0.35 = 140, cost 150; c5 EV 0.4*800*0.35 = 112, cost 120.
    # round 1: c0 is funded first (tie kept in input order, 130 left), c6 no longer fits, c5 does (10 left);
    # c6 then falls back: level 2 (cost 100) and 1 (cost 50) do not fit, level 0 (EV 0.1*1000*0.5 = 50) is free.
    # c4 has EV 0 at every level. Each contact gets a follow-up (7 days): its value is EV * (2 - a).
    assert plan["decision_reason"].tolist() == [
        "contact", "suppressed", "holdout", "cooldown", "fatigue", "low_value", "contact", "contact"]
    assert plan["contact"].tolist() == [True, False, False, False, False, False, True, True]
    assert plan["offer_level"].tolist() == [3, pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, 3, 0]
    assert plan["offer_level"].dtype == "Int64" and plan["followup_days"].dtype == "Int64"
    assert plan["followup_days"].tolist() == [7, pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, 7, 7]
    np.testing.assert_allclose(plan["offer_cost"], [150, 0, 0, 0, 0, 0, 120, 0])
    np.testing.assert_allclose(plan["expected_value"], [140 * 1.6, 0, 0, 0, 0, 0, 112 * 1.6, 50 * 1.9])
    np.testing.assert_allclose(plan["offer_pct"], [0.15] + [np.nan] * 5 + [0.15, 0.0])
    assert plan["holdout"].tolist() == [False, False, True, False, False, False, False, False]
    assert (plan["propensity"] == 1.0).all() and (plan["policy_model"] == "greedy_ev").all()
    assert list(plan.columns[:len(day.columns)]) == list(day.columns)


def tied(day: pd.DataFrame) -> pd.DataFrame:
    """`day` with value, risk and acceptance rounded, and every third customer the same rich, risky one: the budget
    runs out among customers alike, so which of them it funds depends on how ties are broken."""
    day = day.assign(customer_value=day["customer_value"].round(-2), churn_risk=day["churn_risk"].round(1),
                     **{f"accept_prob_{k}": day[f"accept_prob_{k}"].round(1) for k in range(4)})
    alike = np.arange(len(day)) % 3 == 0
    day.loc[alike, ["customer_value", "churn_risk", "channel"]] = [1500.0, 0.9, "email"]
    day.loc[alike, [f"accept_prob_{k}" for k in range(4)]] = [0.2, 0.3, 0.4, 0.5]
    return day


def shuffled(day: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """`day`'s rows in a random order, and each one's place in `day` (its rank when `day` is in id order)."""
    perm = np.random.default_rng(seed).permutation(len(day))
    return day.iloc[perm].reset_index(drop=True), perm


@pytest.mark.parametrize("seed", range(3))
def test_a_day_in_any_row_order_decided_by_its_id_order_gets_the_same_plan(seed):
    day, cfg = tied(_day(3000, seed)), Config(daily_budget=20_000.0)  # ids in order: rank = position
    planned = decide(day, cfg)
    assert 0 < planned["contact"].sum() < (planned["decision_reason"] != "holdout").sum()  # the budget binds
    rows, rank = shuffled(day, seed)
    back = np.argsort(rank)
    pd.testing.assert_frame_equal(decide(rows, cfg, rank=rank).iloc[back].reset_index(drop=True), planned)
    by_id = rules.IdOrder(rows["customer_id"])  # the daily run's rank: ids sorted only where a tie-break needs them
    pd.testing.assert_frame_equal(decide(rows, cfg, rank=by_id).iloc[back].reset_index(drop=True), planned)
    # without the rank, ties go by the rows' new positions: another plan (what the daily run must not publish)
    assert not decide(rows, cfg).iloc[back].reset_index(drop=True)["contact"].equals(planned["contact"])


@pytest.mark.parametrize("span", [1, 7, 500])
def test_greedy_in_spans_and_its_plan_in_chunks_change_no_bit(span):
    day, cfg = tied(_day(3000, 4)), Config(daily_budget=20_000.0)
    planned = decide(day, cfg)
    pd.testing.assert_frame_equal(decide_greedy(day, cfg, span=span), planned)
    decided = decide_rows(day, cfg)  # the daily run's way: the choices for the day, the frame chunk by chunk
    pd.testing.assert_frame_equal(pd.concat([decided[s].frame(day.iloc[s], cfg) for s in rules.spans(len(day), span)]),
                                  planned)


@pytest.mark.parametrize("seed", range(5))
def test_decide_never_breaks_a_hard_rule(seed):
    day = _day(5000, seed)
    cfg = Config(daily_budget=[0.0, 500.0, 5000.0, 20000.0, 1e9][seed], channel_cost=[0.0, 1.0][seed % 2])
    plan = decide(day, cfg)
    assert violations(plan, cfg) == {k: 0 for k in ("budget", "offer", "holdout", "suppressed", "cooldown", "fatigue")}
    assert plan.loc[plan["contact"], "offer_cost"].sum() <= cfg.daily_budget
    assert (plan.loc[plan["contact"], "expected_value"] > 0).all()
    assert plan["contact"].eq(plan["decision_reason"].eq("contact")).all()


def test_budget_skips_only_what_no_longer_fits():
    day, cfg = _day(5000, 7), Config(daily_budget=300.0, channel_cost=1.0)
    plan = decide(day, cfg)
    ev, cost = expected_values(day, cfg), offer_costs(day, cfg)
    cheapest_worth_it = np.where(ev > 0, cost, np.inf).min(axis=1)
    left = cfg.daily_budget - plan["offer_cost"].sum()
    skipped = plan["decision_reason"].eq("budget").to_numpy()
    # spend only grows, so a candidate skipped for budget cannot fit any positive-EV level with what is left
    assert skipped.sum() > 0 and (cheapest_worth_it[skipped] > left).all()


def test_decide_with_a_policy_is_not_here_yet():
    with pytest.raises(ValueError, match="PPO"):
        decide(_day(10), Config(), policy=object())


def test_violations_counts_each_break():
    cfg = Config(daily_budget=100.0)
    plan = decide(_day(400, 3), cfg)
    rules = {"holdout": holdout_mask(plan["customer_id"], cfg.holdout_share), "suppressed": plan["suppressed"],
             "cooldown": plan["days_since_contact"] < 7, "fatigue": plan["contacts_in_window"] + 2 > 3}
    rules = pd.DataFrame(rules, index=plan.index)
    # one row breaking exactly one rule, for each rule
    broken_rows = [rules.index[rules[r] & (rules.sum(axis=1) == 1)][0] for r in rules]
    broken = plan.copy()
    broken.loc[broken_rows, "contact"] = True
    broken.loc[broken_rows, "offer_pct"] = 0.15  # each commits at least 200 * 0.15 = 30: over the budget
    assert violations(broken, cfg) == {"budget": 1, "offer": 0, "holdout": 1, "suppressed": 1, "cooldown": 1,
                                       "fatigue": 1}
    broken.loc[broken_rows[0], "offer_pct"] = 0.5  # not an offer level
    assert violations(broken, cfg)["offer"] == 1


def test_with_use_uplift_the_decision_values_offers_by_the_learned_effect():
    import dataclasses
    from retention.deciding.rules import expected_values
    cfg = Config()
    day = pd.DataFrame({"customer_id": ["a", "b"], "customer_value": [1000.0, 1000.0], "churn_risk": [0.5, 0.5],
                        "channel": ["email", "email"],
                        **{f"accept_prob_{k}": [0.3, 0.3] for k in range(4)}})
    plain = expected_values(day, cfg)
    on = dataclasses.replace(cfg, use_uplift=True)
    with pytest.raises(ValueError, match="uplift_0"):
        expected_values(day, on)
    lifted = day.assign(uplift_0=[0.0, 0.02], uplift_1=0.0, uplift_2=0.0, uplift_3=[0.1, 0.0])
    ev = expected_values(lifted, on)
    # value * (lift - accept * pct) - message cost: the learned lift replaces the plan's own model
    assert ev[0, 3] == pytest.approx(1000 * (0.1 - 0.3 * 0.15) - 0.01)
    assert ev[1, 0] == pytest.approx(1000 * 0.02 - 0.01) and not np.allclose(ev, plain)
    with pytest.raises(ValueError, match="customer_id='b'"):
        expected_values(lifted.assign(uplift_2=[0.0, np.nan]), on)


@pytest.mark.parametrize("text", ["greedy_ev:20261206T214232Z-a16892", "", "é漢"])
def test_a_text_column_is_what_pandas_makes_of_the_scalar(text):
    day = pd.DataFrame({"x": np.arange(3.0)}, index=[5, 6, 9])
    pd.testing.assert_frame_equal(day.assign(m=text_column(text, 3)), day.assign(m=text))
    assert len(text_column(text, 0)) == 0
