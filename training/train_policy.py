"""Train the constrained PPO decision policy in the simulator, evaluate it against the baselines, promote when it wins.

Usage:
    .venv/bin/python -m training.train_policy --profile quick
    .venv/bin/python -m training.train_policy --profile full --seed 1 --artifact-root ./artifacts --no-promote

Cohort: the 7,043 IBM Telco customers with a seeded contact history, scored by the risk and accept champions
(`env.telco_cohort`); the simulator draws churn from their risk and acceptance from the accept champion.
Training episodes start on random days of the year. Evaluation runs the policy and every baseline (no contact,
top risk, greedy EV, random) on the same held-out (seed, start day) episodes, through the same rollout the daily
plan runs, and once more on a one-day horizon. Gate: the policy's net revenue retained beats every baseline's and
no hard rule breaks after enforcement. Writes <root>/models/policy/<version>/: policy.pt, policy.json,
metrics.json (with `evaluation`), evaluation.txt, training_log.csv, learning_curve.png.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import sys
import time


from retention.simulation import simulator as env, ppo
from retention.scoring.accept import AcceptModel
from retention.infra.artifacts import METRICS, champion_dir, new_version, promote_if_passed, version_dir
from retention.config import load_config
from retention.deciding.policy import agent_policy, save_policy, uniform_policy
from retention.simulation.evaluate import (evaluate, evaluation_table, greedy_decider, no_contact_decider, policy_decider, top_risk_decider)

NAME = "policy"
POLICY = "ppo"
BASELINES = ("no_contact", "top_risk", "greedy_ev", "random")
EVAL_SEED = 900_001
"""Evaluation episodes use seeds from here: never a training seed."""
FIRST_DAY = dt.date(2026, 1, 5)
"""Evaluation episodes start at evenly spaced days of the year from here."""

PROFILES = {
    # ~7 s per iteration on 2 busy cores (7,043 customers x 60 days each); quick stays under 5 minutes in all
    "quick": dict(iterations=18, eval_episodes=3, customers=None, horizon=60),
    "full": dict(iterations=150, eval_episodes=10, customers=None, horizon=60),
    "tiny": dict(iterations=2, eval_episodes=1, customers=400, horizon=8),
}
"""Budget per profile: quick is what `make demo` runs, tiny is for smoke tests."""

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


def gate(evaluation: list[dict]) -> dict:
    """Passed when the policy beats every baseline on net revenue retained with zero violations after enforcement."""
    rows = {r["policy"]: r for r in evaluation}
    ours = rows[POLICY]
    margins = {b: round(ours["net_revenue_retained"] - rows[b]["net_revenue_retained"], 2) for b in BASELINES}
    lift = ours["net_revenue_retained"] / rows["greedy_ev"]["net_revenue_retained"] - 1
    return {"margin_over": margins, "lift_over_greedy_ev": round(lift, 4),
            "violations_after": ours["violations_after"],
            "passed": bool(all(m > 0 for m in margins.values()) and ours["violations_after"] == 0)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started = time.perf_counter()
    profile = PROFILES[args.profile]
    cfg = load_config({"artifact_root": args.artifact_root, "data_dir": args.data_dir})
    risk_dir = args.risk_model or champion_dir(args.artifact_root, "risk")
    accept_dir = args.accept_model or champion_dir(args.artifact_root, "accept")

    # cohort: real Telco customers scored by the champions (a sample, budget scaled, for smoke runs)
    cohort = env.telco_cohort(args.data_dir, risk_dir, accept_dir, FIRST_DAY, args.seed, cfg)
    if profile["customers"]:
        cfg = dataclasses.replace(cfg, daily_budget=cfg.daily_budget * profile["customers"] / len(cohort))
        cohort = cohort.sample(profile["customers"], random_state=args.seed)
    table = env.AcceptTable(AcceptModel.load(accept_dir))
    sim = env.Simulator(cohort, table, cfg, horizon=profile["horizon"])
    log.info("cohort: %d customers, mean churn_risk %.3f, mean accept_prob_3 %.3f, daily budget %.0f",
             len(cohort), cohort["churn_risk"].mean(), cohort["accept_prob_3"].mean(), cfg.daily_budget)

    # training
    version = new_version()
    out = version_dir(args.artifact_root, NAME, version)
    out.mkdir(parents=True, exist_ok=True)
    train_cfg = ppo.PPOConfig(iterations=args.iterations or profile["iterations"], horizon=profile["horizon"],
                              seed=args.seed)
    agent, history = ppo.train(sim, train_cfg, out / "training_log.csv")
    ppo.learning_curve(history, out / "learning_curve.png", train_cfg.cost_limit)
    policy = agent_policy(agent, version, train_cfg.block)
    trained = time.perf_counter()

    # evaluation: every policy on the same held-out episodes, then the one-day view
    deciders = {POLICY: policy_decider(policy), "no_contact": no_contact_decider, "top_risk": top_risk_decider,
                "greedy_ev": greedy_decider, "random": policy_decider(uniform_policy(train_cfg.block))}
    held_out = episodes(profile["eval_episodes"])
    evaluation = evaluate(sim, deciders, held_out)
    one_day = evaluate(env.Simulator(cohort, table, cfg, horizon=1), deciders, episodes(4 * len(held_out)))
    verdict = gate(evaluation)
    table_text = evaluation_table(evaluation)
    print(f"\nevaluation: {len(held_out)} episodes x {sim.horizon} days, money per episode\n{table_text}")
    print(f"\none-day view (horizon 1, {4 * len(held_out)} episodes)\n{evaluation_table(one_day)}\n")

    # save
    save_policy(agent, out, version, {**ppo.config_dict(train_cfg), "rules": dataclasses.asdict(cfg)})
    (out / "evaluation.txt").write_text(table_text + "\n")
    report = {"model": NAME, "version": version, "profile": args.profile, "seed": args.seed,
              "risk_model": str(risk_dir), "accept_model": str(accept_dir),
              "cohort": {"customers": len(cohort), "mean_churn_risk": float(cohort["churn_risk"].mean()),
                         "mean_customer_value": float(cohort["customer_value"].mean()),
                         "daily_budget": cfg.daily_budget},
              "simulator": {"horizon_days": sim.horizon, "risk_days": env.RISK_DAYS,
                            "evaluation_episodes": [[s, d.isoformat()] for s, d in held_out]},
              "ppo": ppo.config_dict(train_cfg), "training": history[-1],
              "training_seconds": round(trained - started, 1),
              "evaluation": evaluation, "evaluation_one_day": one_day, "gate": verdict,
              "seconds": round(time.perf_counter() - started, 1)}
    (out / METRICS).write_text(json.dumps(report, indent=2, default=float))  # last: marks a finished run
    log.info("wrote %s (%.1f s)", out, report["seconds"])
    summary = (f"net revenue margin over {verdict['margin_over']}, "
               f"{verdict['violations_after']} violations after enforcement")
    return promote_if_passed(args.artifact_root, NAME, version, verdict["passed"], summary, args.no_promote)


if __name__ == "__main__":
    sys.exit(main())
