"""The per-customer dynamic program and its Lagrangian upper bound: its state model equals the simulator's, it is
exact where the budget does not bind, the bound holds above every policy, and its decisions break no rule."""
import dataclasses
import datetime as dt

import numpy as np
import pytest

from retention.config import Config
from retention.deciding import rules
from retention.scoring.features import NEVER, OUTCOMES
from retention.simulation.dp import CustomerDP, DPPolicy, day_price, upper_bound
from retention.simulation.evaluate import (greedy_decider, greedy_followup_decider, no_contact_decider, simulate,
                                           top_risk_decider)
from retention.simulation.simulator import Simulator
from retention.simulation.worlds import worlds
from tests.unit.test_env import cohort

START = dt.date(2026, 3, 2)
HORIZON = 40
CFG = Config(fatigue_window_days=15, cooldown_days=3, daily_budget=1500.0)
"""A short window, so that customers come back for a second and third contact inside the horizon."""
BASE = np.array([0.10, 0.18, 0.26, 0.34])


def history_table(code, senior, phone, level, campaign, pdays, previous, outcome):
    """A stand-in for AcceptTable whose acceptance moves with every history input, as the champion's does."""
    level, campaign, pdays, previous, outcome = np.broadcast_arrays(level, campaign, pdays, previous, outcome)
    p = BASE[level] * (1.0 + 0.8 * (outcome == OUTCOMES.index("failure"))) * (1.0 - 0.06 * np.minimum(campaign, 5))
    p = p * np.where(pdays < 5, 0.7, np.where(pdays >= NEVER, 1.1, 1.0)) * (1.0 + 0.05 * np.minimum(previous, 3))
    return np.clip(p * (1.0 + 0.1 * np.asarray(senior)), 0.0, 0.95)


def make_sim(cfg=CFG, n=300, world="base") -> Simulator:
    return Simulator(cohort(n, seed=3), history_table, cfg, horizon=HORIZON, world=worlds(cfg)[world])


def expected_net(sim, decider, seed) -> float:
    return simulate(sim, decider, seed, START)["expected"]


def test_first_messages_are_valued_as_the_simulator_values_them():
    # every contact the DP makes, before and after earlier contacts: its model's value of the first message equals
    # the simulator's expected net revenue of that message (acceptance at the history, efficacy, backfire, cost)
    sim = make_sim()
    sim.reset(7, START)
    policy = DPPolicy(sim, CustomerDP(sim).fit_prices(CFG.daily_budget, 3).prices)
    later = 0
    while not sim.done:
        day = sim.day_frame()
        plan, _ = policy(day, CFG, sim.today)
        took = plan["contact"].to_numpy(dtype=bool)
        rows, level = day.index.to_numpy()[took], plan["offer_level"].to_numpy()[took].astype(np.int64)
        sent = (sim.contact_days[rows] >= 0).sum(axis=1)
        dp = policy.dp
        in_window = (sent > 0) & (sim.t - sim.contact_days[rows, 0] < CFG.fatigue_window_days)  # the last follow-up
        modelled = np.where(sent == 0, dp.r1f[sim.t][rows, level],
                            dp.r1s[np.minimum(sent, dp.J - 1), in_window.astype(int), rows, level])
        out = sim.contact(rows, level, plan["followup_days"].to_numpy()[took].astype(np.int64))
        np.testing.assert_allclose(modelled, out.expected[rows], rtol=1e-9, atol=1e-9)
        later += int((sent > 0).sum())
        sim.advance()
    assert later > 0, "no customer came back for a second contact: the test exercised only first contacts"


def test_without_a_binding_budget_the_policy_earns_what_the_dp_says():
    # no budget pressure and no backfire: customers are independent, the relaxation is exact, and the simulator's
    # mean expected revenue under the DP's decisions must equal the sum of the customers' values at price 0
    cfg = dataclasses.replace(CFG, daily_budget=1e9, contact_backfire=0.0)
    sim = make_sim(cfg)
    values, earned = [], []
    for seed in range(12):
        sim.reset(seed, START)
        values.append(CustomerDP(sim).solve(0.0).value.sum())
        earned.append(expected_net(sim, DPPolicy(sim, np.zeros(HORIZON)), seed))
    assert np.mean(earned) == pytest.approx(np.mean(values), rel=0.03)


@pytest.mark.parametrize("world", ["base", "backfire"])
def test_the_bound_lies_above_every_policy(world):
    sim = make_sim(world=world)
    sim.reset(100, START)
    prices = CustomerDP(sim).fit_prices(CFG.daily_budget, 5).prices
    seeds = range(200, 204)
    bound = np.mean([upper_bound(sim, s, START, prices) for s in seeds])
    deciders = {"dp": DPPolicy(sim, prices), "greedy": greedy_decider, "followup": greedy_followup_decider(1),
                "top_risk": top_risk_decider, "none": no_contact_decider}
    earned = {name: np.mean([expected_net(sim, d, s) for s in seeds]) for name, d in deciders.items()}
    assert earned["none"] == 0
    assert all(v <= bound for v in earned.values()), (bound, earned)
    assert earned["dp"] > 0.5 * bound  # not a vacuous bound


def test_the_dp_policy_breaks_no_rule_on_any_message_and_keeps_the_budget():
    sim = make_sim()
    sim.reset(1, START)
    policy = DPPolicy(sim, CustomerDP(sim).fit_prices(CFG.daily_budget, 3).prices)
    out = simulate(sim, policy, 1, START)
    assert out["messages"] > out["contacts"] > 0  # follow-ups were sent
    assert out["after"] == 0  # plans' rules, and the cooldown and cap on every message
    assert out["spend"] <= CFG.daily_budget * HORIZON


def test_fitting_prices_lowers_the_bound_and_prices_are_non_negative():
    sim = make_sim()
    sim.reset(5, START)
    dp = CustomerDP(sim)
    flat = dp.fit_prices(CFG.daily_budget, 0)
    fitted = dp.fit_prices(CFG.daily_budget, 8, target=0.8 * flat.bound)
    assert fitted.bound <= flat.bound and (fitted.prices >= 0).all()
    # the bound is the dual: at price 0 it is the unconstrained value, which the budget can only lower
    assert dp.solve(0.0).bound >= flat.bound


def test_day_price_is_the_least_price_at_which_demand_fits():
    rng = np.random.default_rng(0)
    n = 200
    cost = rng.uniform(1, 50, (n, rules.LEVELS))
    q0 = rng.uniform(-5, 60, (n, rules.LEVELS, 8))
    wait = rng.uniform(0, 10, n)

    def demand(price):
        flat = (q0 - price * cost[:, :, None]).reshape(n, -1)
        act = flat.argmax(axis=1)
        go = flat[np.arange(n), act] > wait
        return cost[np.arange(n), act // 8][go].sum()

    price = day_price(q0, cost, wait, 500.0)
    assert demand(price) <= 500.0 < demand(price * 0.99)
    assert day_price(q0, cost, wait, 1e9) == 0.0


@pytest.mark.parametrize("world", ["no_history", "fatigue"])
def test_every_world_solves_and_values_first_messages_as_the_simulator(world):
    sim = make_sim(world=world, n=120)
    sim.reset(3, START)
    dp = CustomerDP(sim)
    sol = dp.fit_prices(CFG.daily_budget, 2)
    assert np.isfinite(sol.bound) and sol.bound >= 0
    day = sim.day_frame()
    rows = day.index.to_numpy()
    np.testing.assert_allclose(dp.a1f[0][rows], sim.accept_probs(rows), rtol=1e-12)
