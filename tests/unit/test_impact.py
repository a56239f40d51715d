"""Incremental retention against the holdout: exact values on hand-built rows, the checks that refuse a window, and
the interval's coverage of a known lift."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from retention.config import Config
from retention.pipeline import impact

D1, D2 = dt.date(2026, 11, 2), dt.date(2026, 11, 3)
CFG = Config(channel_costs=(0.01, 0.05, 4.0, 0.005), channel_cost=0.0)


def rows(**change) -> pd.DataFrame:
    """Two days, three customers: A and B in the policy arm, H in the holdout; A contacted with offer 3 (15 %)."""
    n = 6
    frame = pd.DataFrame({
        "plan_date": [D1, D1, D1, D2, D2, D2], "customer_id": ["A", "B", "H"] * 2,
        "has_outcome": [True] * n, "in_plan": [True] * n,
        "holdout": [False, False, True] * 2, "plan_holdout": [False, False, True] * 2,
        "treated": [True, False, False, True, False, False], "contact": [True, False, False, True, False, False],
        "offer_level": pd.array([3, None, None, 3, None, None], dtype="Int64"),
        "churned": [False, True, True, False, False, True],
        "accepted": pd.array([True, None, None, False, None, None], dtype="boolean"),
        "horizon_days": [30] * n, "churn_risk": [0.5, 0.2, 0.4, 0.5, 0.2, 0.4],
        "offer_pct": [0.15, None, None, 0.15, None, None], "followup_days": pd.array([0, None, None, 9, None, None],
                                                                                      dtype="Int64"),
        "customer_value": [1000.0, 500.0, 800.0] * 2, "channel": ["email", "email", "email"] * 2,
    })
    for column, values in change.items():
        frame[column] = values
    return frame


def test_all_segment_is_intent_to_treat_with_exact_rates_value_and_cost():
    table = impact.estimate(rows(), CFG, D1, D2, n_boot=200).set_index("segment")
    r = table.loc["all"]
    # policy arm: A, B on two days (1 churn of 4); holdout: H twice (2 of 2)
    assert (r["treated"], r["control"]) == (4, 2)
    assert r["churn_treated"] == 0.25 and r["churn_control"] == 1.0 and r["lift"] == 0.75
    assert r["incremental_customers"] == 3.0
    # the customers kept at the arm's mean customer_value, (1000 + 500) / 2
    assert r["incremental_revenue"] == 3.0 * 750
    # A accepted 15 % of 1000 on D1 (one email), refused on D2 (email and its scheduled follow-up)
    assert r["cost"] == pytest.approx(150 + 0.01 + 0.02)
    assert r["roi"] == pytest.approx((2250 - 150.03) / 150.03)
    assert r["cost_per_incremental_customer"] == pytest.approx(150.03 / 3)
    # three customers: no interval, and the verdict says so
    assert r[["lift_low", "lift_high", "p_value", "min_detectable_effect"]].isna().all()
    assert "too small to conclude: fewer than 10 customers in an arm" in impact.verdict(table.reset_index(), 30)
    assert list(table["window_start"].unique()) == [D1] and list(table["window_end"].unique()) == [D2]


def test_segments_split_both_arms_and_offer_levels_use_a_risk_matched_holdout():
    table = impact.estimate(rows(), CFG, D1, D2, n_boot=200).set_index("segment")
    assert list(table.index[:2]) == ["all", "channel=email"]
    assert {"week=2026-11-02", "offer_level=3"} <= set(table.index)
    # deciles of churn_risk over the six rows: B (0.2) in 2 and 4, H (0.4) in 5 and 7, A (0.5) in 9 and 10
    assert table.loc["risk_decile=2", "treated"] == 1 and table.loc["risk_decile=2", "control"] == 0
    assert pd.isna(table.loc["risk_decile=2", "lift"])
    # A's deciles hold no holdout row: nothing to compare it with
    assert table.loc["offer_level=3", "treated"] == 0 and pd.isna(table.loc["offer_level=3", "lift"])


def test_a_deterministic_outcome_gives_a_degenerate_interval():
    frame = pd.DataFrame({"customer_id": [f"C{i}" for i in range(30)], "churned": [False] * 20 + [True] * 10,
                          "customer_value": 100.0, "cost": 0.0})
    r = impact.segment_row("all", frame[:20], frame[20:], np.ones(10), 200, np.random.default_rng(0))
    assert (r["lift"], r["lift_low"], r["lift_high"], r["p_value"]) == (1.0, 1.0, 1.0, 0.0)


@pytest.mark.parametrize("change, named", [
    ({"has_outcome": [True, True, True, False, False, False]}, "no outcomes for plan_date 2026-11-03"),
    ({"has_outcome": [True, True, True, True, False, True]}, "1 plan rows without an outcome: (2026-11-03, B)"),
    ({"in_plan": [True, True, True, True, True, False]},
     "1 outcomes of no plan row or of a suppressed customer: (2026-11-03, H)"),
    ({"customer_id": ["A", "B", "H", "A", "A", "H"]}, "2 duplicated outcomes: (2026-11-03, A)"),
    ({"contact": [True, False, True, True, False, False]}, "1 holdout customers who were contacted: (2026-11-02, H)"),
])
def test_bad_windows_are_refused_naming_the_rows(change, named):
    with pytest.raises(impact.BadOutcomes, match="nothing written") as err:
        impact.check(rows(**change), D1, D2)
    assert named in str(err.value)


def test_qini_counts_retained_policy_customers_over_the_scaled_holdout():
    frame = impact.prepare(rows(), CFG)
    curve = impact.qini(frame)
    # by churn_risk: A(D1), A(D2) kept, H, H churned, B churned, B kept
    assert curve["qini"].tolist() == [1.0, 2.0, 2.0, 2.0, 2.0 - 0 * 3 / 2, 3.0]
    assert curve["fraction"].iloc[-1] == 1.0


def test_the_verdict_says_plainly_when_the_sample_is_too_small():
    # the same churn rate in both arms: no lift, 20 holdout customers
    frame = pd.DataFrame({"customer_id": [f"C{i}" for i in range(120)], "customer_value": 100.0, "cost": 0.0,
                          "churned": ([True] * 3 + [False] * 7) * 12})
    row = impact.segment_row("all", frame[:100], frame[100:], np.ones(20), 200, np.random.default_rng(0))
    said = impact.verdict(pd.DataFrame([row]), 30)
    assert row["lift_low"] < 0 < row["lift_high"]
    assert "intent-to-treat over 30 days" in said
    assert f"too small to conclude: the interval includes 0; with {row['treated']:,} policy and" in said
    assert f"only a lift of {100 * row['min_detectable_effect']:.2f} points or more" in said


def synthetic(seed: int, n: int = 3000, share: float = 0.10, contact: float = 0.5, effect: float = 0.10):
    """One day of n customers: a random holdout `share`; half the policy arm contacted, whose churn falls by
    `effect`. The true intent-to-treat lift is contact x effect."""
    rng = np.random.default_rng(seed)
    risk = rng.uniform(0.15, 0.45, n)
    policy = rng.random(n) >= share
    treated = policy & (rng.random(n) < contact)
    churned = rng.random(n) < risk - effect * treated
    return pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)], "policy": policy, "churned": churned,
                         "customer_value": 100.0, "cost": 0.0})


def test_the_interval_covers_a_known_lift_at_its_nominal_rate():
    # 100 seeded repetitions, 1,000 customers each: a 95 % interval should miss the truth about 5 times; 7 or more
    # misses (probability 0.23 at 95 % coverage, 0.005 at 85 %) would say it is too narrow
    truth = 0.5 * 0.10
    covered = []
    for seed in range(100):
        frame = synthetic(seed, n=1000)
        control = frame[~frame["policy"]]
        r = impact.segment_row("all", frame[frame["policy"]], control, np.ones(len(control)), 200,
                               np.random.default_rng(seed))
        covered.append(r["lift_low"] <= truth <= r["lift_high"])
    assert sum(covered) >= 94
    assert sum(covered[:20]) >= 19


def test_the_daily_report_horizon_is_the_outcomes_horizon():
    from retention.pipeline import outcomes

    assert impact.HORIZON_DAYS == outcomes.HORIZON_DAYS
