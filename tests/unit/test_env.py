"""The simulator: history features as the SQL computes them, the Gymnasium view, churn and reward bookkeeping,
the champion lookup table, and the budget-exact sampler against a plain loop."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

from retention.deciding import rules
from retention.scoring.accept import MONOTONE, AcceptModel
from retention.config import Config
from retention.simulation.simulator import AcceptTable, Simulator, date_code, history_features
from retention.simulation.gym_env import RetentionEnv
from retention.deciding.rules import stable_argsort
from retention.deciding.sampler import BUDGET, DELAYS, NOISE, OBS, candidate_order, decide_day, observe
from tests.reference import sample_block
from retention.scoring.features import MONTHS, NEVER, OUTCOMES, WEEKDAYS, accept_features

START = dt.date(2026, 3, 2)
OLD_ECONOMICS = dict(channel_costs=(0.0,) * 4, offer_efficacy=(1.0,) * 4, contact_backfire=0.0)
"""Free messages, offers that keep every accepting would-be churner, no backfire: for the tests whose dynamics do
not depend on effect sizes (the worlds' own effects are tested with the defaults)."""
ACCEPT = np.array([0.1, 0.2, 0.3, 0.4])


def cohort(n: int, seed: int = 0, risk=None) -> pd.DataFrame:
    """A scored cohort as telco_cohort returns it, with the columns the simulator reads."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "customer_id": [f"C{i:05d}-{seed}" for i in range(n)],
        "customer_value": rng.uniform(200, 1500, n).round(2),
        "churn_risk": rng.uniform(0, 0.9, n) if risk is None else np.full(n, risk),
        "senior_citizen": rng.random(n) < 0.2,
        "channel": rng.choice(["email", "sms", "phone", "app"], n),
        "contract": rng.choice(["month_to_month", "one_year", "two_year"], n),
    })


def flat_table(p=ACCEPT):
    """A stand-in for AcceptTable: P(accept) by offer level only."""
    return lambda code, senior, phone, level, *rest: np.take(p, np.broadcast_arrays(level, *rest)[0])


# cohort


def test_history_features_equal_the_sql():
    # the example of tests/integration/test_bq.py::test_daily_customers_sql_derives_history_features
    day = dt.date(2026, 4, 1)
    ago = lambda n: day - dt.timedelta(days=n)  # noqa: E731
    dates = [ago(1), ago(10), ago(40), ago(3), day]
    history = pd.DataFrame({"contact_date": dates, "customer_id": ["a", "a", "a", "b", "b"], "plan_date": dates,
                            "offer_level": [1, 2, 0, 1, 3],
                            "accepted": pd.array([False, True, None, True, False], dtype="boolean")})
    suppression = pd.DataFrame({"customer_id": ["c", "a"], "reason": ["opt_out", "legal"], "since": [ago(5), ago(-1)]})
    got = history_features(pd.DataFrame({"customer_id": ["a", "b", "c"]}), history, suppression, day, 30)
    got = got.set_index("customer_id")
    assert got["contacts_in_window"].to_dict() == {"a": 2, "b": 1, "c": 0}
    assert got["days_since_contact"].to_dict() == {"a": 1, "b": 3, "c": 999}
    assert got["total_contacts"].to_dict() == {"a": 3, "b": 1, "c": 0}
    assert got["last_outcome"].to_dict() == {"a": "failure", "b": "success", "c": "nonexistent"}
    assert got["suppressed"].to_dict() == {"a": False, "b": False, "c": True}


# the champion as a table


@pytest.fixture(scope="module")
def accept_model() -> AcceptModel:
    """A small accept model on synthetic bank-like rows (seconds to fit)."""
    rng = np.random.default_rng(0)
    n = 3000
    mapped = pd.DataFrame({
        "offer_level": rng.integers(0, 4, n), "campaign": rng.integers(1, 12, n),
        "pdays": np.where(rng.random(n) < 0.7, NEVER, rng.integers(0, 28, n)), "previous": rng.integers(0, 6, n),
        "senior": rng.integers(0, 2, n), "contact": rng.choice(["cellular", "telephone"], n),
        "poutcome": rng.choice(OUTCOMES, n), "month": rng.choice(MONTHS, n), "day_of_week": rng.choice(WEEKDAYS, n)})
    y = rng.random(n) < 0.05 + 0.06 * mapped["offer_level"] + 0.2 * (mapped["pdays"] < 10) - 0.01 * mapped["campaign"]
    X = accept_features(mapped)
    return AcceptModel(n_estimators=40, max_depth=3, early_stopping_rounds=10, monotone_constraints=MONOTONE,
                       random_state=0).fit(X[:2400], y[:2400], X[2400:], y[2400:])


def test_accept_table_equals_the_model(accept_model):
    table, rng, n = AcceptTable(accept_model), np.random.default_rng(1), 500
    q = {"senior": rng.integers(0, 2, n), "phone": rng.integers(0, 2, n), "level": rng.integers(0, 4, n),
         "campaign": rng.integers(1, 40, n), "pdays": np.where(rng.random(n) < 0.3, NEVER, rng.integers(0, 998, n)),
         "previous": rng.integers(0, 12, n), "outcome": rng.integers(0, 3, n)}
    day = dt.date(2026, 7, 18)  # a Saturday: scored as Friday
    got = table(date_code(day), *q.values())
    mapped = pd.DataFrame({
        "offer_level": q["level"], "campaign": q["campaign"], "pdays": q["pdays"], "previous": q["previous"],
        "senior": q["senior"], "contact": np.where(q["phone"] == 1, "telephone", "cellular"),
        "poutcome": np.asarray(OUTCOMES)[q["outcome"]], "month": "jul", "day_of_week": "fri"})
    np.testing.assert_allclose(got, accept_model.predict_proba(accept_features(mapped)), atol=1e-6)
    assert np.isnan(table.p_).sum() < table.p_.size  # filled where asked, once
    np.testing.assert_array_equal(table(date_code(day), *q.values()), got)


# simulator


def test_churn_follows_the_thirty_day_risk():
    sim = Simulator(cohort(20_000, risk=0.3), flat_table(), Config(), horizon=30)
    sim.reset(3, START)
    while not sim.done:
        sim.advance()
    assert abs((~sim.alive).mean() - 0.3) < 0.015  # ~5 standard deviations


def test_expected_reward_is_the_greedy_ev_and_the_mean_of_the_drawn_one():
    cfg = Config(channel_cost=1.0)
    sim = Simulator(cohort(4000, seed=2), flat_table(), cfg, horizon=2)
    realized, expected = [], []
    for seed in range(20):
        sim.reset(seed, START)
        day = sim.day_frame()
        rows, level = day.index.to_numpy(), np.full(len(day), 2)
        out = sim.contact(rows, level, np.zeros(len(day), dtype=np.int64))
        np.testing.assert_allclose(out.expected[rows], rules.expected_values(day, cfg)[:, 2])
        realized.append(out.realized.sum())
        expected.append(out.expected.sum())
    assert abs(np.mean(realized) / np.mean(expected) - 1) < 0.05  # ~4 standard errors


def test_followup_repeats_the_offer_after_its_delay():
    # accepted only at the follow-up of a day-0 contact made with delay 3 (pdays 3)
    table = lambda code, senior, phone, level, campaign, pdays, previous, outcome: (  # noqa: E731
        np.where(np.broadcast_arrays(pdays, level)[0] == 3, 1.0, 0.0))
    sim = Simulator(cohort(200, risk=0.0), table, Config(**OLD_ECONOMICS), horizon=6)
    sim.reset(1, START)
    rows = np.flatnonzero(sim.days_since_contact() != 3)
    delay = np.where(np.arange(len(rows)) % 2 == 0, 3, 2)
    before = sim.total[rows].copy()
    out = sim.contact(rows, np.ones(len(rows), dtype=np.int64), delay)
    assert not out.accepted.any()
    accepted_on = {}
    while not sim.done:
        follow, _ = sim.advance()
        accepted_on[sim.t] = set(np.flatnonzero(follow.accepted))
    assert accepted_on[3] == set(rows[delay == 3]) and all(not v for t, v in accepted_on.items() if t != 3)
    assert sim.secured[rows].tolist() == (delay == 3).tolist()
    # the follow-up is a message of its own: two contacts, the newest `delay` days after the first
    assert (sim.total[rows] == before + 2).all() and (sim.days_since_contact()[rows] == 6 - delay).all()


def test_a_secured_customer_neither_churns_nor_is_retained_twice():
    sim = Simulator(cohort(50, risk=1.0), flat_table(np.ones(4)), Config(**OLD_ECONOMICS), horizon=3)  # all churn today
    sim.reset(0, START)
    rows = np.arange(25)
    first = sim.contact(rows, np.full(25, 1), np.zeros(25, dtype=np.int64))
    assert first.retained[rows].all()
    _, churned = sim.advance()
    assert churned.tolist() == [False] * 25 + [True] * 25 and sim.alive.sum() == 25
    again = sim.contact(rows, np.full(25, 1), np.zeros(25, dtype=np.int64))
    assert not again.retained.any()
    np.testing.assert_allclose(again.realized[rows], -0.05 * sim.value[rows])  # only the discount
    np.testing.assert_allclose(again.expected[rows], -0.05 * sim.value[rows])


def test_contact_history_window_and_cooldown():
    cfg = Config(fatigue_window_days=5, cooldown_days=2)
    sim = Simulator(cohort(30), flat_table(np.zeros(4)), cfg, horizon=9)
    sim.reset(0, START)
    fresh = np.flatnonzero(sim.days_since_contact() == NEVER)[:3]
    for t in range(7):
        if t in (0, 2, 4):
            sim.contact(fresh, np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64))
        sim.advance()
    # contacts on days 0, 2, 4; on day 7 the window (days 3..7) holds one of them, the last was 3 days ago
    assert sim.contacts_in_window()[fresh].tolist() == [1, 1, 1]
    assert sim.days_since_contact()[fresh].tolist() == [3, 3, 3] and sim.total[fresh].tolist() == [3, 3, 3]


# the Gymnasium view


def test_env_passes_the_gymnasium_checker():
    env = RetentionEnv(Simulator(cohort(12), flat_table(), Config(daily_budget=300.0), horizon=3), START)
    check_env(env, skip_render_check=True)


def test_env_charges_and_refuses_illegal_contacts():
    env = RetentionEnv(Simulator(cohort(40), flat_table(), Config(daily_budget=0.0), horizon=2), START, penalty=7.0)
    obs, info = env.reset(seed=0)
    steps, breaks, total = 0, 0, 0.0
    done = False
    while not done:
        i = env.queue[env.pos]
        cooling, contacts = obs[7] == 1, env.sim.total[i]
        obs, reward, terminated, truncated, info = env.step(np.array([1, 3, 0]))  # always the richest offer
        # the budget is 0: every contact with a paid offer is refused and charged, plus cooldown/fatigue breaks
        assert info["costs"]["budget"] == 1 and env.sim.total[i] == contacts  # not contacted
        breaks += sum(info["costs"].values())
        assert info["costs"]["cooldown"] == int(cooling)
        total += reward
        steps += 1
        done = terminated or truncated
    assert steps > 40 and total == pytest.approx(-7.0 * breaks)
    assert info["action_mask"].sum() == 0  # terminal observation


def test_env_budget_is_exact_per_step():
    cfg = Config(daily_budget=200.0)
    env = RetentionEnv(Simulator(cohort(60, seed=4), flat_table(), cfg, horizon=1), START)
    obs, info = env.reset(seed=1)
    spent = 0.0
    while True:
        assert obs[BUDGET] == pytest.approx((200.0 - spent) / 200.0, abs=1e-6)
        cost = env.costs[env.pos, 1]
        legal = bool(info["action_mask"][1] and info["action_mask"][2 + 1])
        obs, reward, _, truncated, info = env.step(np.array([1, 1, 2]))
        spent += cost if legal else 0.0
        if truncated:
            break
    assert 0 < spent <= 200.0


# the sampler


def _sample_reference(logits, u, costs, eligible, budget):
    """One row at a time: mask the offers that do not fit what is left, then draw each head from its uniform."""
    lc, lo, ld = logits
    n, left = len(lc), budget
    out, before = np.zeros((n, 3), dtype=np.int64), np.zeros(n)
    for i in range(n):
        ok = eligible[i] & (costs[i] <= left)
        level = int(np.argmax(np.where(ok, lo[i] - np.log(-np.log(u[i, 1:5])), -np.inf)))
        contact = ok.any() and lc[i, 1] - lc[i, 0] + np.log(u[i, 0] / (1 - u[i, 0])) > 0
        p = np.exp(ld[i] - ld[i].max())
        out[i] = contact, level, int(np.searchsorted(np.cumsum(p / p.sum()), u[i, 5]))
        before[i] = left
        left -= costs[i, level] if contact else 0.0
    return out, before, left


@pytest.mark.parametrize("seed", range(25))
def test_sample_block_equals_the_reference_loop(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    logits = (rng.normal(0, 2, (n, 2)), rng.normal(0, 2, (n, 4)), rng.normal(0, 1, (n, DELAYS)))
    u = rng.random((n, NOISE))
    value = rng.uniform(100, 1500, n)
    costs = value[:, None] * np.array([0.0, 0.05, 0.10, 0.15]) + (seed % 3 == 0) * 2.0
    if seed % 2:
        costs = costs.round()  # whole costs fill the budget exactly
    eligible = rng.random(n) < 0.8
    budget = float(rng.choice([0.0, 1.0, rng.uniform(0, costs.sum() / 4), 1e9]))
    got = sample_block(logits, u, costs, eligible, budget)
    contact, level, delay, before, left = got.contact, got.level, got.delay, got.before, got.left
    ref, ref_before, ref_left = _sample_reference(logits, u, costs, eligible, budget)
    assert contact.tolist() == ref[:, 0].astype(bool).tolist()
    assert np.where(contact, level, 0).tolist() == np.where(ref[:, 0] == 1, ref[:, 1], 0).tolist()
    assert delay.tolist() == ref[:, 2].tolist()
    np.testing.assert_allclose(before, ref_before, atol=1e-6)
    assert left == pytest.approx(ref_left, abs=1e-6) and left >= -1e-9


def test_decide_day_logp_is_the_masked_probability_and_blocks_see_the_budget():
    rng = np.random.default_rng(5)
    n, block = 300, 64
    costs = rng.uniform(100, 1500, n)[:, None] * np.array([0.0, 0.05, 0.10, 0.15])
    eligible = rng.random(n) < 0.7
    seen = []
    W = rng.normal(0, 1, (len(OBS), 2 + 4 + DELAYS))

    def logits(obs):
        seen.append(obs[:, BUDGET].copy())
        z = obs @ W
        return z[:, :2], z[:, 2:6], z[:, 6:]

    obs = observe(rng.random(n), rng.random((n, 4)), rng.integers(0, 40, n), rng.integers(0, 4, n), Config())
    d = decide_day(obs, costs, eligible, 2000.0, rng.random((n, NOISE)), logits, block)
    assert len(seen) == 5 and seen[0].tolist() == [1.0] * block
    assert all(len(set(s.tolist())) == 1 for s in seen)  # one budget state per block
    assert d.spent <= 2000.0 and d.spent == pytest.approx(float(costs[d.contact, d.level[d.contact]].sum()))
    z = d.obs @ W
    for i in range(n):
        pc = np.exp(z[i, :2] - z[i, :2].max()) * d.contact_ok[i]
        pc /= pc.sum()
        p = pc[int(d.contact[i])]
        if d.contact[i]:
            ok = eligible[i] & d.affordable[i]
            po = np.exp(z[i, 2:6] - z[i, 2:6].max()) * ok
            pd_ = np.exp(z[i, 6:] - z[i, 6:].max())
            p *= po[d.level[i]] / po.sum() * pd_[d.delay[i]] / pd_.sum()
            assert ok[d.level[i]]
        assert np.exp(d.logp[i]) == pytest.approx(p, rel=1e-9)
    assert not (d.contact & ~eligible).any()


@pytest.mark.parametrize("block", [1, 16])
def test_decide_day_stops_drawing_when_spent_and_fills_what_the_draws_would_have(block):
    """stop_when_spent: from the first block where no eligible row left has an offer that fits, no forward pass;
    the rows after it get what the draws gave (not contacted, log-probability 0, the budget left), and the rows no
    rule lets us contact still show which offers the budget left could pay (here: the cheap tail)."""
    rng = np.random.default_rng(3)
    n = 200
    obs = np.zeros((n, len(OBS)), dtype=np.float32)
    obs[:, 1:5] = rng.uniform(0, 1, (n, 4))
    costs = rng.uniform(10, 50, (n, 4))
    eligible = np.arange(n) < 150
    costs[150:] = 1.0  # may not be contacted, but cheap: affordable with what is left
    u = rng.random((n, NOISE))
    calls = [0]

    def logits(o):
        calls[0] += len(o)
        return np.tile([0.0, 2.0], (len(o), 1)), 3.0 * o[:, 1:5].astype(np.float64), np.zeros((len(o), DELAYS))

    full = decide_day(obs, costs, eligible, 300.0, u, logits, block)
    drawn = calls[0]
    short = decide_day(obs, costs, eligible, 300.0, u, logits, block, stop_when_spent=True)
    assert calls[0] - drawn < 150 and full.before.min() < 10  # spent part-way: the eligible tail was never drawn
    for field in ("contact", "level", "logp", "contact_ok", "affordable", "before", "obs"):
        np.testing.assert_array_equal(getattr(short, field), getattr(full, field), err_msg=field)
    np.testing.assert_array_equal(short.delay[short.contact], full.delay[full.contact])
    assert short.spent == full.spent and short.affordable[150:].any()


def test_decide_day_of_no_candidates():
    d = decide_day(np.zeros((0, len(OBS)), np.float32), np.zeros((0, 4)), np.zeros(0, bool), 100.0,
                   np.zeros((0, NOISE)), lambda obs: pytest.fail("no block, no forward pass"), 16, propose=True)
    assert d.contact.shape == (0,) and d.contact_ok.shape == (0, 2) and d.affordable.shape == (0, 4)
    assert d.proposal.shape == (0, 3) and d.spent == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_stable_argsort_equals_numpy_stable(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 5000))
    key = rng.choice([-1.5, -0.0, 0.0, 2.0, np.nan, np.inf], n) if seed % 2 else rng.normal(size=n).round(1)
    assert stable_argsort(key).tolist() == np.argsort(key, kind="stable").tolist()
    rank = rng.permutation(n)  # ties by a given rank instead of position
    assert stable_argsort(key, rank).tolist() == np.lexsort((rank, key)).tolist()


def test_candidate_order_puts_revenue_at_stake_first_ties_by_position():
    risk, value = np.array([0.0, 0.5, 0.2, 0.5, 0.0]), np.array([100.0, 10.0, 25.0, 10.0, 5.0])
    assert candidate_order(risk, value).tolist() == [1, 2, 3, 0, 4]  # 5, 5, 5, then the zeros


@pytest.mark.parametrize("day", [0, 40])
def test_a_backfire_raises_the_risk_from_the_message_on_whatever_the_day(day):
    # memoryless: a customer alive on `day` whose hazard a message raises churns within RISK_DAYS with the raised
    # risk, on day 40 as on day 0 (raising it from day 0 made late messages push several times harder)
    from retention.simulation.simulator import RISK_DAYS
    cfg = Config(contact_backfire=0.5)
    sim = Simulator(cohort(20000, risk=0.3), flat_table(), cfg, horizon=60)
    sim.reset(0, START)
    sim.t = day
    alive = np.flatnonzero(sim.churn_day >= day)
    before = sim.churn_day[alive].copy()
    sim._raise_hazard(alive)
    assert (sim.churn_day[alive] <= before).all()  # only ever earlier
    within = (sim.churn_day[alive] <= day + RISK_DAYS - 1).mean()
    assert within == pytest.approx(0.3 * 1.5, abs=0.015)
