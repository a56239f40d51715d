"""The policy in the daily plan: hard rules hold whatever the network says, propensities are the probabilities of
the actions taken, decisions are seeded by (ds, customer), and the champion loads; plus baselines and evaluation."""
import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.deciding.decide import decide_plan
from retention.deciding import greedy, rules, sampler
from retention.deciding import policy as policy_module
from retention.config import Config
from retention.simulation.simulator import Simulator
from retention.deciding.sampler import DELAYS
from retention.deciding.policy import (Policy, agent_policy, load_policy, roll, rollout, rollout_frame, save_policy,
                                      uniform_policy)
from retention.simulation.evaluate import evaluate, greedy_decider, no_contact_decider, policy_decider, top_risk_decider
from retention.deciding.greedy import no_contact, top_risk
from retention.deciding.network import Agent
from tests.unit.test_env import START, cohort, flat_table
from tests.unit.test_plan import _day, shuffled, tied

DS = dt.date(2026, 5, 4)
RULES = {"budget": 0, "offer": 0, "holdout": 0, "suppressed": 0, "cooldown": 0, "fatigue": 0}


EVERY_OFFER_WORTH_IT = dict(channel_costs=(0.0,) * 4, offer_efficacy=(1.0,) * 4, contact_backfire=0.0)
"""Free messages and offers that keep every accepting would-be churner: with churn_risk above 0.15 every offer has a
positive expected value, so `rules.worth_making` masks none and the sampler's own masks are what is tested."""


def constant_policy(contact, offer, delay, version="const", block=7) -> Policy:
    """Every row gets the same logits (contact (2,), offer (4,), delay (8,))."""
    def logits(obs):
        n = len(obs)
        return tuple(np.tile(np.asarray(x, dtype=np.float64), (n, 1)) for x in (contact, offer, delay))
    return Policy(logits, version, block)


def random_policy(seed: int, scale: float, block: int) -> Policy:
    """Arbitrary network outputs: logits that depend on the state and on the row, any scale."""
    rng = np.random.default_rng(seed)
    W = rng.normal(0, scale, (9, 14))

    def logits(obs):
        z = obs @ W + rng.normal(0, scale, (len(obs), 14))
        return z[:, :2], z[:, 2:6], z[:, 6:]
    return Policy(logits, f"random-{seed}", block)


# hard rules, for any policy output, budget and history


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 400), seed=st.integers(0, 10_000), scale=st.sampled_from([0.0, 0.1, 1.0, 10.0, 300.0]),
       budget=st.sampled_from([0.0, 1.0, 50.0, 500.0, 5000.0, 1e9]), channel_cost=st.sampled_from([0.0, 0.5, 40.0]),
       cooldown=st.integers(0, 10), cap=st.integers(1, 4), holdout=st.sampled_from([0.0, 0.1, 0.5]),
       block=st.integers(1, 64))
def test_rollout_never_breaks_a_hard_rule(n, seed, scale, budget, channel_cost, cooldown, cap, holdout, block):
    day = _day(n, seed)
    cfg = Config(daily_budget=budget, channel_cost=channel_cost, cooldown_days=cooldown, fatigue_cap=cap,
                 holdout_share=holdout)
    planned = rollout(day, cfg, random_policy(seed, scale, block), DS)
    assert rules.violations(planned, cfg) == RULES
    contact = planned["contact"].to_numpy()
    assert planned.loc[contact, "offer_cost"].sum() <= budget + rules.BUDGET_TOL
    assert not (contact & planned["holdout"].to_numpy()).any()
    assert contact.tolist() == planned["decision_reason"].eq("contact").tolist()
    assert planned["offer_level"].isna().tolist() == (~contact).tolist()
    # a follow-up never falls inside the cooldown: none, or cooldown .. cooldown + DELAYS - 2 days later
    assert set(planned.loc[contact, "followup_days"]) <= {0, *range(cooldown, cooldown + DELAYS - 1)}
    propensity = planned["propensity"].to_numpy()
    assert ((propensity > 0) & (propensity <= 1)).all()


# propensities


def test_propensity_is_the_probability_of_the_action_taken():
    day = _day(300, 1).assign(suppressed=False, days_since_contact=999, contacts_in_window=0)
    cfg = Config(daily_budget=1e9, holdout_share=0.0, **EVERY_OFFER_WORTH_IT)
    day = day.assign(churn_risk=0.5 + 0.4 * day["churn_risk"])
    # P(contact) = 3/4; offers 1:1:1:2; delays: delay 7 has weight e^1, the others 1
    planned = rollout(day, cfg, constant_policy([0, np.log(3)], [0, 0, 0, np.log(2)], [0] * 7 + [1]), DS)
    contact = planned["contact"].to_numpy()
    level = planned["offer_level"].fillna(0).to_numpy(dtype=int)
    delay = rules.followup_choice(planned["followup_days"].fillna(0).to_numpy(dtype=int), cfg)
    p_offer = np.array([1, 1, 1, 2]) / 5
    p_delay = np.where(np.arange(8) == 7, np.e, 1.0) / (7 + np.e)
    expected = np.where(contact, 0.75 * p_offer[level] * p_delay[delay], 0.25)
    np.testing.assert_allclose(planned["propensity"], expected, rtol=1e-9)
    assert 0.65 < contact.mean() < 0.85


def test_propensity_follows_the_budget_mask():
    # two customers of value 1000; 100 of budget: the first can afford levels 0-2, then what is left
    day = _day(2, 3).assign(customer_id=["c0", "c1"], customer_value=1000.0, churn_risk=[0.9, 0.8], suppressed=False,
                            days_since_contact=999, contacts_in_window=0)
    cfg = Config(daily_budget=100.0, holdout_share=0.0, **EVERY_OFFER_WORTH_IT)
    planned = rollout(day, cfg, constant_policy([-50, 50], [0, 0, 0, 50], [0] * 8), DS)  # wants contact + level 3
    # row 0: level 3 (cost 150) is masked, levels 0-2 equally likely: it takes one of them with probability 1/3
    assert planned["contact"].tolist() == [True, True]
    first = int(planned["offer_level"].iloc[0])
    assert first in (0, 1, 2) and planned["propensity"].iloc[0] == pytest.approx(1 / 3 * 1 / 8)
    left = 100.0 - 1000.0 * cfg.offer_pcts[first]
    fits = [k for k in range(3) if 1000.0 * cfg.offer_pcts[k] <= left]
    assert int(planned["offer_level"].iloc[1]) in fits
    assert planned["propensity"].iloc[1] == pytest.approx(1 / len(fits) * 1 / 8)


def test_sampling_frequencies_match_the_propensities():
    # 4,000 identical customers: the noise is keyed by customer id, so each row is an independent draw
    n = 4000
    rows = _day(n, 4).assign(suppressed=False, days_since_contact=999, contacts_in_window=0, churn_risk=0.5,
                             customer_value=800.0)
    cfg = Config(holdout_share=0.0, daily_budget=1e9, **EVERY_OFFER_WORTH_IT)
    level_logits = np.array([0.5, 0.0, -0.5, 1.0])
    planned = rollout(rows, cfg, constant_policy([0.3, -0.2], level_logits, np.linspace(0, 1, 8)), DS)
    contact = planned["contact"].to_numpy()
    p_contact = 1 / (1 + np.exp(0.5))
    assert abs(contact.mean() - p_contact) < 4 * np.sqrt(p_contact * (1 - p_contact) / n)
    np.testing.assert_allclose(planned.loc[~contact, "propensity"], 1 - p_contact)
    p_level = np.exp(level_logits) / np.exp(level_logits).sum()
    levels = planned.loc[contact, "offer_level"].to_numpy(dtype=int)
    np.testing.assert_allclose(np.bincount(levels, minlength=4) / contact.sum(), p_level, atol=0.03)
    p_delay = np.exp(np.linspace(0, 1, 8)) / np.exp(np.linspace(0, 1, 8)).sum()
    delays = rules.followup_choice(planned.loc[contact, "followup_days"].to_numpy(dtype=int), cfg)
    np.testing.assert_allclose(planned.loc[contact, "propensity"], p_contact * p_level[levels] * p_delay[delays])


# determinism


def test_decisions_are_seeded_by_ds_and_customer_not_by_row_order():
    day = _day(500, 6)
    cfg = Config(daily_budget=1e9)  # no budget interplay between rows
    policy = random_policy(1, 1.0, 32)
    first = rollout(day, cfg, constant_policy([0, 0], [0] * 4, [0] * 8), DS).set_index("customer_id")
    again = rollout(day.sample(frac=1, random_state=0), cfg, constant_policy([0, 0], [0] * 4, [0] * 8), DS)
    pd.testing.assert_frame_equal(first, again.set_index("customer_id").loc[first.index])
    other_day = rollout(day, cfg, constant_policy([0, 0], [0] * 4, [0] * 8), DS + dt.timedelta(days=1))
    assert (other_day["contact"].to_numpy() != first["contact"].to_numpy()).any()
    assert rollout(day, cfg, policy, DS)["contact"].sum() > 0


def test_decide_dispatches_to_the_policy():
    day, cfg = _day(200, 7), Config(daily_budget=300.0)
    policy = random_policy(2, 1.0, 16)
    planned = decide_plan(day, cfg, policy, DS.isoformat())
    pd.testing.assert_frame_equal(planned, rollout(day, cfg, random_policy(2, 1.0, 16), DS))
    assert (planned["policy_model"] == "random-2").all()
    assert list(planned.columns) == list(greedy.decide_greedy(day, cfg).columns)
    assert planned["offer_level"].dtype == "Int64" and planned["followup_days"].dtype == "Int64"
    with pytest.raises(ValueError, match="ds"):
        decide_plan(day, cfg, policy)


def test_reasons_name_every_kind_of_no():
    day = _day(400, 8)
    cfg = Config(daily_budget=100.0)
    planned = rollout(day, cfg, constant_policy([0, 0], [0, 0, 0, 5], [0] * 8), DS)
    reason = planned["decision_reason"]
    assert set(reason) <= {"contact", "holdout", "suppressed", "cooldown", "fatigue", "budget", "low_value", "wait"}
    assert {"contact", "wait"} <= set(reason)
    eligible, rule = rules.eligibility(day, cfg)
    assert (reason[~eligible] == pd.Series(rule, index=day.index)[~eligible]).all()


# the champion on disk


def test_save_and_load_give_the_same_decisions(tmp_path):
    assert load_policy(tmp_path / "missing") is None
    torch.manual_seed(0)
    agent = Agent(hidden=16)
    save_policy(agent, tmp_path, "v1", {"block": 8})
    loaded = load_policy(tmp_path)
    assert loaded.version == "v1" and loaded.block == 8
    day, cfg = _day(300, 9), Config(daily_budget=2000.0)
    pd.testing.assert_frame_equal(rollout(day, cfg, loaded, DS), rollout(day, cfg, agent_policy(agent, "v1", 8), DS))


def test_agent_policy_is_the_network_on_one_thread():
    """What is guaranteed: the deployed forward (`agent_policy`) is bit-identical to `inference_logits` on one thread
    (one code path, one machine), and equal to the training forward `agent.logits` within float32 rounding: other
    kernels (thread counts, AVX-512 or not, another CPU vendor) may round the last bits differently."""
    torch.manual_seed(3)
    agent = Agent(hidden=32).eval()
    logits = agent_policy(agent, "v1").logits
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for n in (1, 7, 1024):
            obs = np.random.default_rng(n).random((n, 9), dtype=np.float32)
            with torch.inference_mode():
                want = [x.double().numpy() for x in agent.logits(torch.from_numpy(obs))]
            got = logits(obs)
            assert torch.get_num_threads() == 2  # the forward's single thread is not left behind
            torch.set_num_threads(1)
            with torch.inference_mode():
                same_path = [x.double().numpy() for x in agent.inference_logits(torch.from_numpy(obs))]
            torch.set_num_threads(2)
            assert all(g.dtype == np.float64 for g in got)
            assert all(np.array_equal(g, s) for g, s in zip(got, same_path))
            assert all(np.allclose(g, w, rtol=1e-5, atol=1e-6) for g, w in zip(got, want))
            assert all(np.array_equal(g, r) for g, r in zip(got, logits(obs)))  # repeatable
    finally:
        torch.set_num_threads(threads)


def test_rolled_reasons_are_the_rules_by_name():
    day, cfg = _day(300, 11), Config(daily_budget=500.0)
    r = roll(day, cfg, random_policy(3, 1.0, 32), DS)
    _, rule = rules.eligibility(day, cfg)
    assert r.reason.tolist() == rule.tolist()
    np.testing.assert_array_equal(r.ev, rules.expected_values(day, cfg)[r.queue])


# baselines and evaluation


def test_top_risk_funds_the_riskiest_eligible_with_the_richest_offer():
    day = _day(300, 10)
    cfg = Config(daily_budget=600.0)
    planned = top_risk(day, cfg)
    eligible, _ = rules.eligibility(day, cfg)
    contact = planned["contact"].to_numpy()
    assert (planned.loc[contact, "offer_level"] == 3).all() and not (contact & ~eligible).any()
    assert planned.loc[contact, "offer_cost"].sum() <= 600.0
    skipped = eligible & ~contact
    cheapest_left = 600.0 - planned["offer_cost"].sum()
    riskier = day["churn_risk"].to_numpy() > day.loc[contact, "churn_risk"].min()
    assert (rules.offer_costs(day, cfg)[skipped & riskier, 3] > cheapest_left).all()  # skipped only when unaffordable
    assert not no_contact(day, cfg)["contact"].any()


def test_evaluation_rows_and_the_shared_episodes():
    sim = Simulator(cohort(150, seed=5), flat_table(), Config(daily_budget=900.0), horizon=4)
    deciders = {"none": no_contact_decider, "top": top_risk_decider, "greedy": greedy_decider,
                "random": policy_decider(uniform_policy(block=16))}
    rows = evaluate(sim, deciders, [(1, START), (2, START + dt.timedelta(days=9))])
    assert [r["policy"] for r in rows] == list(deciders)
    keys = {"policy", "net_revenue_retained", "roi", "contact_rate", "retained_customers", "violations_before",
            "violations_after"}
    assert all(keys <= set(r) for r in rows)
    none = rows[0]
    assert none["net_revenue_retained"] == 0 and none["contact_rate"] == 0 and none["roi"] is None
    assert all(r["violations_after"] == 0 for r in rows)
    assert rows[3]["violations_before"] > 0  # a uniform policy proposes contacts the rules forbid
    assert rows[2]["net_revenue_retained"] > 0
    again = evaluate(sim, {"greedy": greedy_decider}, [(1, START), (2, START + dt.timedelta(days=9))])
    assert again[0] == rows[2]  # same seeds, same episodes


def test_one_customer_with_the_budget_left_at_their_turn_gets_the_plans_decision():
    """What `retention decide` promises: the same facts, day and budget state as in the plan give the plan's
    decision. With one row per forward pass the state at a row's turn is the budget left then (Decisions.before)."""
    from tests.unit.test_golden_decisions import golden_logits

    day = _day(240, 11)
    cfg = Config(daily_budget=900.0, **EVERY_OFFER_WORTH_IT)
    policy = Policy(golden_logits, "golden", block=1)
    r = roll(day, cfg, policy, DS)
    planned = rollout_frame(day, cfg, policy, r)
    cols = ["contact", "offer_level", "followup_days", "propensity", "decision_reason"]
    compared = 0
    for pos in range(0, len(r.queue), 3):
        i = r.queue[pos]
        one = rollout(day.iloc[[i]], cfg, policy, DS, budget_left=float(r.decisions.before[pos]))
        assert one[cols].iloc[0].equals(planned[cols].iloc[i]), (i, one[cols].iloc[0], planned[cols].iloc[i])
        compared += int(planned["contact"].iloc[i])
    assert compared >= 5 and r.decisions.before[-1] < cfg.daily_budget  # contacts compared, and a budget spent
    # the whole budget instead of what was left: some late customer is decided differently
    late = [r.queue[p] for p in range(len(r.queue)) if r.decisions.before[p] < 0.5 * cfg.daily_budget]
    assert any(not rollout(day.iloc[[i]], cfg, policy, DS)[cols].iloc[0].equals(planned[cols].iloc[i]) for i in late)


@pytest.mark.parametrize("seed", range(2))
def test_a_rollout_of_a_day_in_any_row_order_by_its_id_order_is_the_same(seed):
    """The daily run decides the rows in the score files' order with their customer_id order as the rank: ties in
    the queue (revenue at stake) go by rank, so the plan is the one of the day in id order."""
    day, cfg = tied(_day(600, seed)), Config(daily_budget=1500.0)
    whole = rollout(day, cfg, random_policy(4, 1.0, 16), DS)
    assert 0 < whole["contact"].sum() and whole["offer_cost"].sum() > 1400  # the budget binds
    rows, rank = shuffled(day, seed)
    back = np.argsort(rank)
    again = rollout(rows, cfg, random_policy(4, 1.0, 16), DS, rank=rank)
    pd.testing.assert_frame_equal(again.iloc[back].reset_index(drop=True), whole)
    by_id = rollout(rows, cfg, random_policy(4, 1.0, 16), DS, rank=rules.IdOrder(rows["customer_id"]))
    pd.testing.assert_frame_equal(by_id.iloc[back].reset_index(drop=True), whole)
    other = rollout(rows, cfg, random_policy(4, 1.0, 16), DS).iloc[back].reset_index(drop=True)
    assert not other["contact"].equals(whole["contact"])  # by position instead: another queue, another plan


@pytest.mark.parametrize("span", [16, 48, 4096])
@pytest.mark.parametrize("budget", [300.0, 800.0, 1e9])
def test_a_plan_rollout_stops_drawing_once_nobody_can_be_funded_and_changes_no_decision(monkeypatch, span, budget):
    """roll(plan_only=True) skips the forward pass and the draws from the first block where no offer left in the
    queue fits the budget left: the same contacts, levels, log-probabilities and budget states, the same plan."""
    monkeypatch.setattr(sampler, "SPAN_ROWS", span)
    monkeypatch.setattr(policy_module, "SPAN_ROWS", span)
    day, cfg = _day(400, 5), Config(daily_budget=budget, channel_cost=5.0)  # a contact costs 10 or more
    rows, drawing = [0], random_policy(4, 1.0, 16)

    def counted(obs):
        rows[0] += len(obs)
        return drawing.logits(obs)

    rolled = roll(day, cfg, random_policy(4, 1.0, 16), DS)
    worth = (rolled.code[rolled.queue] == 0) & (rolled.ev > 0).any(axis=1)  # some offer a budget could fund
    full, last_eligible = rolled.decisions, int(np.flatnonzero(worth)[-1])
    counting = dataclasses.replace(drawing, logits=counted)
    short = roll(day, cfg, counting, DS, plan_only=True).decisions
    for field in ("contact", "level", "logp", "contact_ok", "affordable", "before", "obs"):
        np.testing.assert_array_equal(getattr(short, field), getattr(full, field), err_msg=field)
    np.testing.assert_array_equal(short.delay[short.contact], full.delay[full.contact])
    assert short.spent == full.spent
    pd.testing.assert_frame_equal(rollout(day, cfg, random_policy(4, 1.0, 16), DS),
                                  rollout_frame(day, cfg, random_policy(4, 1.0, 16),
                                                roll(day, cfg, random_policy(4, 1.0, 16), DS)))
    if budget < 1e9:  # the budget runs out part-way: customers who might have been contacted are never drawn
        assert 0 < rows[0] <= last_eligible
    else:  # only the queue's tail of customers without an offer worth making is skipped
        assert rows[0] > last_eligible


@pytest.mark.parametrize("span", [1, 16, 50])
def test_deciding_in_spans_changes_no_bit(monkeypatch, span):
    """roll gathers the queue's inputs and decide_day runs its post-draw steps span by span (cache-sized at 10M rows): any span gives the same plan,
    propensities and unmasked proposals as one span over the day."""
    day, cfg = _day(400, 3), Config(daily_budget=800.0)
    whole = rollout(day, cfg, random_policy(4, 1.0, 16), DS)
    proposal = roll(day, cfg, random_policy(4, 1.0, 16), DS, propose=True).decisions.proposal
    assert 0 < whole["contact"].sum() < len(day) and whole["offer_cost"].sum() > 700  # the budget binds
    monkeypatch.setattr(sampler, "SPAN_ROWS", span)
    monkeypatch.setattr(policy_module, "SPAN_ROWS", span)  # the queue's inputs, gathered span by span
    pd.testing.assert_frame_equal(rollout(day, cfg, random_policy(4, 1.0, 16), DS), whole)
    np.testing.assert_array_equal(roll(day, cfg, random_policy(4, 1.0, 16), DS, propose=True).decisions.proposal,
                                  proposal)
