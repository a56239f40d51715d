"""Train the constrained PPO decision policy in the simulator, evaluate it against the baselines, promote when it wins.

Usage:
    .venv/bin/python -m training.train_policy --profile quick
    .venv/bin/python -m training.train_policy --profile full --seed 1 --artifact-root ./artifacts --no-promote

Cohort: the 7,043 IBM Telco customers with a seeded contact history, scored by the risk and accept champions
(`simulator.telco_cohort`). The simulator states its truth as treatment effects in named worlds
(retention/simulation/worlds.py: base, no_history, fatigue, backfire); PPO trains on all of them in turn (domain
randomisation). Evaluation runs the policy and every baseline (no contact, top risk, greedy EV, greedy EV with the
best fixed follow-up, searched on training seeds, random) on the same held-out (seed, start day) episodes in every
world, through the same rollout the daily plan runs. Gate: in every world the policy beats the strongest baseline by
more than the paired 95 % interval (its lower end above 0), with no rule broken on any message. Otherwise the
champion is that rule (rule.json beside the network), and metrics.json says so. Writes
<root>/models/policy/<version>/: policy.pt, policy.json, metrics.json, evaluation.txt, training_log.csv,
learning_curve.png (and rule.json when the rule won).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import sys
import time


import numpy as np

from retention.simulation import dp, simulator as env, ppo
from retention.scoring.accept import AcceptModel
from retention.infra.artifacts import METRICS, champion_dir, new_version, promote_if_passed, version_dir
from retention.config import load_config
from retention.deciding.policy import agent_policy, save_policy, uniform_policy
from retention.deciding.policy import RULE_FILE
from retention.simulation.evaluate import (best_followup, evaluate, evaluation_table, greedy_decider,
                                           greedy_followup_decider, no_contact_decider, paired_margin, policy_decider,
                                           simulate, top_risk_decider)
from retention.simulation.worlds import worlds

NAME = "policy"
POLICY = "ppo"
BASELINES = ("no_contact", "top_risk", "greedy_ev", "greedy_ev_followup", "dp", "random")
"""What the policy must beat in every world. `dp` is the per-customer dynamic program solved in the plan's own model
(the base world) and run in each world: what a planner that knows only the plan's beliefs would do."""
RULES = ("greedy_ev", "greedy_ev_followup")
"""The rules the daily plan can run as champion when the policy fails its gate (the DP is measured, not yet deployed:
it needs the accept model at future history states in the decide stage)."""
ORACLE = "dp_oracle"
"""The DP solved in the world it runs in (it knows the world's true effects): a reference, not a competitor."""
TRAIN_SEED = 500_001
"""Episodes that tune a baseline (the greedy follow-up) use seeds from here: never an evaluation seed."""
EVAL_SEED = 900_001
"""Evaluation episodes use seeds from here: never a training seed."""
FIRST_DAY = dt.date(2026, 1, 5)
"""Evaluation episodes start at evenly spaced days of the year from here."""

PROFILES = {
    # ~7 s per iteration on 2 busy cores (7,043 customers x 60 days each); quick stays under 5 minutes in all
    "quick": dict(iterations=24, eval_episodes=4, tune_episodes=1, customers=None, horizon=60, price_steps=20),
    "full": dict(iterations=200, eval_episodes=10, tune_episodes=3, customers=None, horizon=60, price_steps=40),
    "smoke": dict(iterations=6, eval_episodes=2, tune_episodes=1, customers=1500, horizon=30, price_steps=5),
    "tiny": dict(iterations=2, eval_episodes=2, tune_episodes=1, customers=400, horizon=8, price_steps=2),
}
"""Budget per profile: quick is what `make demo` runs, smoke what the test session trains once, tiny is for the
training smoke test; full is the production profile (10 held-out episodes per world)."""

log = logging.getLogger("train_policy")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cfg = load_config()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact-root", default=cfg.artifact_root, help="models go to <root>/models/policy/<version>/")
    p.add_argument("--data-dir", default=cfg.data_dir, help="folder holding the IBM Telco CSV")
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick", help="training budget")
    p.add_argument("--seed", type=int, default=1, help="training seed (evaluation seeds are fixed)")
    p.add_argument("--iterations", type=int, help="override the profile's PPO iterations")
    p.add_argument("--risk-model", help="risk model directory (default: the risk champion under the root)")
    p.add_argument("--accept-model", help="accept model directory (default: the accept champion under the root)")
    p.add_argument("--no-promote", action="store_true", help="only report: never touch the champion, exit 0")
    return p.parse_args(argv)


def episodes(n: int) -> list[tuple[int, dt.date]]:
    """The held-out evaluation episodes: fixed seeds, start days spread over the year."""
    return [(EVAL_SEED + i, FIRST_DAY + dt.timedelta(days=int(365 * i / n))) for i in range(n)]


MONEY = "expected_net_revenue"
"""The money the gate and the bound compare: each message's expected net revenue given its state, summed (the
realized draw, net_revenue_retained, is reported beside it; its noise would swamp a margin of a few percent)."""


def gate(evaluations: dict[str, list[dict]]) -> dict:
    """Per world: the strongest baseline, the policy's paired margin over it, and both against the upper bound.
    Passed when in every world the margin's 95 % interval lies above 0 and no message broke a rule."""
    per_world, passed = {}, True
    for name, evaluation in evaluations.items():
        rows = {r["policy"]: r for r in evaluation}
        strongest = max(BASELINES, key=lambda b: rows[b][MONEY])
        margin = paired_margin(rows[POLICY][f"{MONEY}_by_episode"], rows[strongest][f"{MONEY}_by_episode"])
        ok = margin["low"] > 0 and rows[POLICY]["violations_after"] == 0
        per_world[name] = {"strongest_rule": strongest, "margin": margin, "passed": ok,
                           "policy_net": rows[POLICY][MONEY], "rule_net": rows[strongest][MONEY],
                           "policy_of_bound": rows[POLICY].get("of_bound"),
                           "rule_of_bound": rows[strongest].get("of_bound"),
                           "violations_after": rows[POLICY]["violations_after"]}
        passed &= ok
    return {"worlds": per_world, "passed": bool(passed), "money": MONEY}


def best_rule(evaluations: dict[str, list[dict]]) -> str:
    """The deployable rule with the most expected net revenue summed over the worlds (the champion when the policy
    fails its gate)."""
    totals = {b: sum({r["policy"]: r for r in ev}[b][MONEY] for ev in evaluations.values()) for b in RULES}
    return max(totals, key=totals.get)


def dp_prices(sim: env.Simulator, episode: tuple[int, dt.date], steps: int, target: float) -> np.ndarray:
    """Per-day budget prices for the DP in the simulator's world, fitted on one training episode (never a held-out
    one): Polyak steps aimed at `target` (what the strongest rule earned there), then, when the DP at those prices
    earns more, again aimed at that (a higher target is a tighter aim: the bound drops faster)."""
    sim.reset(*episode)
    prices = dp.CustomerDP(sim).fit_prices(sim.cfg.daily_budget, steps, target).prices
    earned = simulate(sim, dp.DPPolicy(sim, prices), *episode)["expected"]
    if earned > target:
        sim.reset(*episode)
        prices = dp.CustomerDP(sim).fit_prices(sim.cfg.daily_budget, steps, earned, start=prices).prices
    return prices


def upper_bound(sim: env.Simulator, prices: np.ndarray, held_out: list[tuple[int, dt.date]]) -> float:
    """Mean over the held-out episodes of the Lagrangian upper bound at `prices` (valid at any prices)."""
    return float(np.mean([dp.upper_bound(sim, seed, start, prices) for seed, start in held_out]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started = time.perf_counter()
    profile = PROFILES[args.profile]
    cfg = load_config({"artifact_root": args.artifact_root, "data_dir": args.data_dir})
    if cfg.use_uplift:
        # the simulated days carry no uplift_0..3 (no customer of the simulator has outcomes to learn them from);
        # the policy observes risk, acceptance and contact history only, so the same network ranks the uplift
        # model's offer values at plan time
        log.info("use_uplift is on: the simulator values offers with the plan's own model (rules.churn_lift); "
                 "the daily plan will value them with the uplift champion")
        cfg = dataclasses.replace(cfg, use_uplift=False)
    risk_dir = args.risk_model or champion_dir(args.artifact_root, "risk")
    accept_dir = args.accept_model or champion_dir(args.artifact_root, "accept")

    # cohort: real Telco customers scored by the champions (a sample, budget scaled, for smoke runs)
    cohort = env.telco_cohort(args.data_dir, risk_dir, accept_dir, FIRST_DAY, args.seed, cfg)
    if profile["customers"]:
        cfg = dataclasses.replace(cfg, daily_budget=cfg.daily_budget * profile["customers"] / len(cohort))
        cohort = cohort.sample(profile["customers"], random_state=args.seed)
    table = env.AcceptTable(AcceptModel.load(accept_dir))
    sims = {name: env.Simulator(cohort, table, cfg, horizon=profile["horizon"], world=w)
            for name, w in worlds(cfg).items()}
    log.info("cohort: %d customers, mean churn_risk %.3f, mean accept_prob_3 %.3f, daily budget %.0f, worlds %s",
             len(cohort), cohort["churn_risk"].mean(), cohort["accept_prob_3"].mean(), cfg.daily_budget, list(sims))

    # training: one episode per iteration, the worlds in turn
    version = new_version()
    out = version_dir(args.artifact_root, NAME, version)
    out.mkdir(parents=True, exist_ok=True)
    train_cfg = ppo.PPOConfig(iterations=args.iterations or profile["iterations"], horizon=profile["horizon"],
                              seed=args.seed)
    agent, history = ppo.train(list(sims.values()), train_cfg, out / "training_log.csv")
    ppo.learning_curve(history, out / "learning_curve.png", train_cfg.cost_limit, f"policy {version}")
    policy = agent_policy(agent, version, train_cfg.block)
    trained = time.perf_counter()

    # the strongest rules: greedy EV's best fixed follow-up, tuned on training seeds in the plan's own world
    tune = [(TRAIN_SEED + i, FIRST_DAY + dt.timedelta(days=int(365 * i / profile["tune_episodes"])))
            for i in range(profile["tune_episodes"])]
    followup, by_followup = best_followup(sims["base"], tune)
    log.info("greedy EV by fixed follow-up choice (net per episode): %s; best %d", by_followup, followup)

    # the DP's budget prices, fitted on the tuning episode: in the plan's own model (base), and in each world for
    # the oracle and the upper bound; Polyak steps aim at what the strongest rule earned there
    target = {name: simulate(sim, greedy_followup_decider(followup), *tune[0])["expected"] for name, sim in sims.items()}
    steps = profile["price_steps"]
    prices = {name: dp_prices(sim, tune[0], steps, target[name]) for name, sim in sims.items()}
    log.info("DP prices fitted (%d subgradient steps per world), day 0: %s", steps,
             {n: round(float(p[0]), 3) for n, p in prices.items()})

    # evaluation: every policy on the same held-out episodes, in every world
    held_out = episodes(profile["eval_episodes"])
    common = {POLICY: policy_decider(policy), "no_contact": no_contact_decider, "top_risk": top_risk_decider,
              "greedy_ev": greedy_decider, "greedy_ev_followup": greedy_followup_decider(followup)}
    evaluations, bounds = {}, {}
    for name, sim in sims.items():
        deciders = {**common, "dp": dp.DPPolicy(sim, prices["base"], world=sims["base"].world),
                    "random": policy_decider(uniform_policy(train_cfg.block)),
                    ORACLE: dp.DPPolicy(sim, prices[name], name=ORACLE)}
        evaluations[name] = evaluate(sim, deciders, held_out)
        bounds[name] = upper_bound(sim, prices[name], held_out)
        for row in evaluations[name]:
            row["of_bound"] = round(row[MONEY] / bounds[name], 4) if bounds[name] > 0 else None
        log.info("world %s evaluated: upper bound %.0f", name, bounds[name])
    verdict = gate(evaluations)
    rule = best_rule(evaluations)
    tables = "\n\n".join(f"world {name}: {len(held_out)} episodes x {profile['horizon']} days, money per episode; "
                          f"upper bound {bounds[name]:,.0f}\n{evaluation_table(ev)}"
                          for name, ev in evaluations.items())
    print(f"\n{tables}\n\ngate: {json.dumps(verdict['worlds'], default=float)}\n")

    # save
    save_policy(agent, out, version, {**ppo.config_dict(train_cfg), "rules": dataclasses.asdict(cfg)})
    (out / "evaluation.txt").write_text(tables + "\n")
    champion = POLICY if verdict["passed"] else rule
    if not verdict["passed"]:  # the rule is the champion: the daily plan runs it, and the metrics say why
        (out / RULE_FILE).write_text(json.dumps({"rule": rule, "version": version,
                                                 "followup": followup if rule == "greedy_ev_followup" else 0}))
    report = {"model": NAME, "version": version, "profile": args.profile, "seed": args.seed,
              "risk_model": str(risk_dir), "accept_model": str(accept_dir),
              "cohort": {"customers": len(cohort), "mean_churn_risk": float(cohort["churn_risk"].mean()),
                         "mean_customer_value": float(cohort["customer_value"].mean()),
                         "daily_budget": cfg.daily_budget},
              "simulator": {"horizon_days": profile["horizon"], "risk_days": env.RISK_DAYS,
                            "worlds": {n: dataclasses.asdict(s.world) for n, s in sims.items()},
                            "evaluation_episodes": [[s, d.isoformat()] for s, d in held_out]},
              "greedy_followup": {"best": followup, "expected_net_by_choice": by_followup,
                                  "tuning_episodes": [[s, d.isoformat()] for s, d in tune]},
              "upper_bound": {"per_world": bounds, "price_steps": steps,
                              "prices_day0": {n: float(p[0]) for n, p in prices.items()},
                              "method": "Lagrangian relaxation of the daily budget, per-customer DP over (day, offer, "
                                        "follow-up) in the world's own probabilities (retention/simulation/dp.py)"},
              "ppo": ppo.config_dict(train_cfg), "training": history[-1],
              "training_seconds": round(trained - started, 1),
              "evaluation": evaluations, "gate": verdict, "champion": champion,
              "seconds": round(time.perf_counter() - started, 1)}
    (out / METRICS).write_text(json.dumps(report, indent=2, default=float))  # last: marks a finished run
    log.info("wrote %s (%.1f s)", out, report["seconds"])
    margins = {n: (w["strongest_rule"], w["margin"]["low"], w["margin"]["high"]) for n, w in verdict["worlds"].items()}
    summary = (f"PPO margin over the strongest rule per world (rule, 95 % low, high): {margins}; champion: {champion}"
               + ("" if verdict["passed"] else f" (the rule: PPO did not beat it in every world)"))
    # the version is promoted either way: as the policy when it passed, else as the rule it names (rule.json)
    return promote_if_passed(args.artifact_root, NAME, version, True, summary, args.no_promote)


if __name__ == "__main__":
    sys.exit(main())
