"""Train the treatment-effect (uplift) model on simulated logs, gate it, and promote it to champion when it passes.

Usage:
    .venv/bin/python -m training.train_uplift --profile quick
    .venv/bin/python -m training.train_uplift --profile full --world backfire --artifact-root ./artifacts --no-promote

Logs: the 7,043 IBM Telco customers scored by the risk and accept champions (`simulator.telco_cohort`), lived in the
simulator (retention/simulation) for one decision day per episode, each episode a fresh seed (its own contact history,
churn days and luck). On that day every eligible customer (not suppressed, outside cooldown and the fatigue cap) is
logged: the holdout is never contacted (the control arm), everyone else gets one message with an offer level drawn
from the logging policy, epsilon-greedy around the plan's best expected value (`logging_policy`), whose probabilities
are logged as the plan logs its propensities. The outcome is the simulator's own: retained = did not churn within
RISK_DAYS (30) of the decision day. Training episodes and held-out episodes use disjoint seeds; the held-out ones draw
the level uniformly (a randomised test: see UNIFORM).

Gate, on the held-out episodes:
- Qini (causalml's qini_score, per row: see `qini_table`) per offer level of the rows in that arm or the control,
  ranked by the model's effect, by the accept model's ranking (accept_prob_k: who responds, not who is changed) and
  at random; the mean over the levels must beat both.
- agreement with the simulator's TRUE effect of offer k, value-free: rules.churn_lift(risk, accept_k, efficacy_k,
  backfire) with the world's efficacy and each customer's backfire: Spearman rank correlation pooled over levels at
  least --min-spearman; calibration (true effect by decile of the predicted one, and its slope) reported.
The plan's own model (churn_lift with Config.offer_efficacy and contact_backfire) is reported beside them: in the
`base` world it is the truth itself, so there it is a ceiling, not a rival. Writes <root>/models/uplift/<version>/:
the effect models, metrics.json, qini.png, calibration.png, test_effects.parquet.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from retention.config import load_config
from retention.deciding import rules
from retention.infra.artifacts import METRICS, champion_dir, new_version, promote_if_passed, version_dir
from retention.scoring.accept import AcceptModel
from retention.scoring.uplift import CONTROL, LEVELS, NUMERIC, UpliftModel
from retention.simulation import simulator as env
from retention.simulation.worlds import world as named_world

NAME = "uplift"
TRAIN_SEED, TEST_SEED = 700_001, 800_001
"""Training episodes use seeds from TRAIN_SEED, held-out ones from TEST_SEED: never the same customer-day luck."""
UNIFORM = 1.0
"""Logging epsilon of the held-out episodes: every level equally likely, so each arm is a random sample of the
eligible customers and the Qini of a ranking is unbiased (an arm chosen by expected value would differ from the
holdout in who it holds, whatever the ranking)."""
FIRST_DAY = dt.date(2026, 1, 5)
MIN_SPEARMAN = 0.5
"""Gate: lowest rank correlation of the predicted with the true effect, pooled over the levels."""

PROFILES = {
    # one episode (7,043 customers, 30 simulated days) takes ~0.1 s; fitting quick's 240k rows ~15 s on a busy core
    "quick": dict(episodes=40, test_episodes=10, customers=None, n_estimators=100),
    "full": dict(episodes=150, test_episodes=30, customers=None, n_estimators=200),
    "tiny": dict(episodes=6, test_episodes=3, customers=1500, n_estimators=30),
}
"""Budget per profile: quick is `retention train uplift`'s and the local retrain DAG's, full production's, tiny the
smoke test's."""

log = logging.getLogger("train_uplift")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cfg = load_config()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact-root", default=cfg.artifact_root, help="models go to <root>/models/uplift/<version>/")
    p.add_argument("--data-dir", default=cfg.data_dir, help="folder holding the IBM Telco CSV")
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick", help="training budget")
    p.add_argument("--seed", type=int, default=1, help="fitting seed (episode seeds are fixed)")
    p.add_argument("--world", default=cfg.world, help="simulated truth: base | no_history | fatigue | backfire")
    p.add_argument("--epsilon", type=float, default=0.5, help="logging policy: share of uniformly drawn offer levels")
    p.add_argument("--risk-model", help="risk model directory (default: the risk champion under the root)")
    p.add_argument("--accept-model", help="accept model directory (default: the accept champion under the root)")
    p.add_argument("--min-spearman", type=float, default=MIN_SPEARMAN, help="gate: lowest pooled Spearman")
    p.add_argument("--no-promote", action="store_true", help="only report: never touch the champion, exit 0")
    return p.parse_args(argv)


# logs


def logging_policy(day: pd.DataFrame, cfg, epsilon: float) -> np.ndarray:
    """(n, 4) probability of each offer level: epsilon spread evenly, the rest on the plan's best expected value."""
    best = rules.expected_values(day, cfg).argmax(axis=1)
    return np.full((len(day), LEVELS), epsilon / LEVELS) + (1.0 - epsilon) * np.eye(LEVELS)[best]


def logged_episode(sim: env.Simulator, seed: int, start: dt.date, epsilon: float) -> pd.DataFrame:
    """One decision day of logs: every eligible customer with its arm, the logging policy's level probabilities,
    the true effect of each level (world efficacy, the customer's backfire) and whether it was retained."""
    sim.reset(seed, start)
    day = sim.day_frame()
    allowed = ~day["suppressed"].to_numpy(dtype=bool) & rules.contact_allowed(
        day["days_since_contact"].to_numpy(), day["contacts_in_window"].to_numpy(), sim.cfg)
    day = day[allowed]
    rows = day.index.to_numpy()
    probs = logging_policy(day, sim.cfg, epsilon)
    u = np.random.default_rng([seed, start.toordinal()]).random(len(rows))
    level = np.minimum((u[:, None] >= np.cumsum(probs, axis=1)).sum(axis=1), LEVELS - 1)  # inverse CDF
    holdout = sim.holdout[rows]
    true = rules.churn_lift(sim.risk()[rows, None], sim.accept_probs(rows), sim.efficacy[None, :],
                            sim.backfire[rows, None])
    # the day's messages, no follow-up; then RISK_DAYS days with no other contact
    sim.contact(rows[~holdout], level[~holdout], np.zeros(int((~holdout).sum()), np.int64))
    churned = np.zeros(len(sim.ids), dtype=bool)
    while not sim.done:
        churned |= sim.advance()[1]
    return day.reset_index(drop=True).assign(
        episode=seed, arm=np.where(holdout, CONTROL, level), retained=~churned[rows],
        **{f"p_{k}": probs[:, k] for k in range(LEVELS)}, **{f"true_{k}": true[:, k] for k in range(LEVELS)})


def simulated_logs(sim: env.Simulator, first_seed: int, episodes: int, epsilon: float) -> pd.DataFrame:
    """`episodes` logged days, start days spread over the year."""
    frames = []
    for i in range(episodes):
        frames.append(logged_episode(sim, first_seed + i, FIRST_DAY + dt.timedelta(days=int(365 * i / episodes)),
                                     epsilon))
        log.info("episode %d/%d: %d logged customers, %d in the holdout", i + 1, episodes, len(frames[-1]),
                 int((frames[-1]["arm"] == CONTROL).sum()))
    return pd.concat(frames, ignore_index=True)


# evaluation


def level_frame(logs: pd.DataFrame, effect: np.ndarray, level: int, cfg, seed: int) -> pd.DataFrame:
    """The rows of arm `level` or the control with the rankings the gate compares (causalml's y, w, scores)."""
    rows = logs["arm"].isin([CONTROL, level]).to_numpy()
    part = logs[rows]
    plan = rules.churn_lift(part["churn_risk"].to_numpy(), part[f"accept_prob_{level}"].to_numpy(),
                            cfg.offer_efficacy[level], cfg.contact_backfire)
    return pd.DataFrame({"y": part["retained"].to_numpy(dtype=float),
                         "w": (part["arm"] == level).to_numpy(dtype=int),
                         "uplift": effect[rows, level], "accept": part[f"accept_prob_{level}"].to_numpy(),
                         "plan_model": plan, "oracle": part[f"true_{level}"].to_numpy(),
                         "random": np.random.default_rng([seed, level]).random(int(rows.sum()))})


def qini_table(logs: pd.DataFrame, effect: np.ndarray, cfg, seed: int) -> dict:
    """Qini and AUUC of each ranking per level, and their means over the levels.

    Qini: causalml's area between the ranking's Qini curve and random's, unnormalised, divided by the level's rows:
    customers retained above random per row, averaged over the cut-offs. (Normalising divides by the whole arm's
    incremental customers, which for a check-in is near 0 and would blow one level's noise up over the mean.)
    AUUC: causalml's normalised area under the cumulative gain, reported only."""
    from causalml.metrics import auuc_score, qini_score

    per_level = {}
    for k in range(LEVELS):
        frame = level_frame(logs, effect, k, cfg, seed)
        per_level[str(k)] = {"rows": len(frame), "treated": int(frame["w"].sum()),
                             "qini": (qini_score(frame, normalize=False) / len(frame)).round(6).to_dict(),
                             "auuc": auuc_score(frame, normalize=True).round(5).to_dict()}
    names = per_level["0"]["qini"]
    mean = {m: {n: round(float(np.mean([v[m][n] for v in per_level.values()])), 6) for n in names}
            for m in ("qini", "auuc")}
    return {"per_level": per_level, "mean": mean}


def agreement(logs: pd.DataFrame, effect: np.ndarray, bins: int = 10) -> dict:
    """Predicted against true effect: Spearman per level and pooled, calibration by decile of the prediction."""
    true = logs[[f"true_{k}" for k in range(LEVELS)]].to_numpy()
    spearman = {str(k): float(stats.spearmanr(effect[:, k], true[:, k]).statistic) for k in range(LEVELS)}
    pred, truth = effect.ravel(), true.ravel()
    decile = np.minimum((stats.rankdata(pred) - 1) * bins // len(pred), bins - 1).astype(int)
    table = pd.DataFrame({"d": decile, "pred": pred, "true": truth}).groupby("d").mean()
    slope = float(np.polyfit(pred, truth, 1)[0])
    return {"spearman": spearman, "spearman_pooled": float(stats.spearmanr(pred, truth).statistic),
            "calibration": {"predicted": table["pred"].round(5).tolist(), "true": table["true"].round(5).tolist(),
                            "mean_abs_gap": float(np.abs(table["pred"] - table["true"]).mean()),
                            "slope_true_on_predicted": slope},
            "mean_predicted": [float(x) for x in effect.mean(axis=0)],
            "mean_true": [float(x) for x in true.mean(axis=0)]}


def decision_value(logs: pd.DataFrame, effect: np.ndarray, cfg, budget: float) -> dict:
    """What deciding by the uplift gains over the plan's own model, in the simulator's truth: the greedy rule (the
    level of highest expected value, no contact unless positive, the day's budget spent in that order) with each
    model's churn lift, and the true expected net revenue of its messages per logged customer-day; the oracle decides
    with the true lift."""
    value, risk = logs["customer_value"].to_numpy(np.float64), logs["churn_risk"].to_numpy(np.float64)
    accept, costs = rules.accept_probs(logs), rules.offer_costs(logs, cfg)
    plan_ev = rules.offer_values(accept, value, risk, rules.message_costs(logs, cfg), cfg)
    plan_lift = rules.churn_lift(risk[:, None], accept, np.asarray(cfg.offer_efficacy), cfg.contact_backfire)
    true_lift = logs[[f"true_{k}" for k in range(LEVELS)]].to_numpy()
    # EV = value * (lift - accept * pct) - message cost: another lift moves it by value * (lift - plan_lift)
    evs = {name: plan_ev + value[:, None] * (lift - plan_lift)
           for name, lift in (("plan_model", plan_lift), ("uplift", effect), ("oracle", true_lift))}
    rows, out = np.arange(len(logs)), {}
    for name, ev in evs.items():
        level = ev.argmax(axis=1)
        contact = np.zeros(len(logs), dtype=bool)
        for _, part in logs.groupby("episode").indices.items():  # one day's budget per episode
            offer = part[ev[part, level[part]] > 0]
            contact[offer] = rules.budget_pass(ev[offer, level[offer]], costs[offer, level[offer]], budget)
        true_net = np.where(contact, evs["oracle"][rows, level], 0.0)
        out[name] = {"net_per_customer_day": round(float(true_net.mean()), 4),
                     "contact_rate": round(float(contact.mean()), 4)}
    gain = out["uplift"]["net_per_customer_day"] - out["plan_model"]["net_per_customer_day"]
    return {**out, "budget": budget, "uplift_gain_over_plan_model": round(gain, 4)}


def gate(qini: dict, agree: dict, min_spearman: float) -> dict:
    """Passed when the mean Qini beats the accept ranking and random, and the pooled Spearman is high enough."""
    q = qini["mean"]["qini"]
    checks = {"qini_beats_accept": q["uplift"] > q["accept"], "qini_beats_random": q["uplift"] > q["random"],
              "spearman": agree["spearman_pooled"] >= min_spearman}
    return {**checks, "qini_uplift": q["uplift"], "qini_accept": q["accept"], "qini_random": q["random"],
            "spearman_pooled": agree["spearman_pooled"], "min_spearman": min_spearman, "passed": all(checks.values())}


def plots(logs: pd.DataFrame, effect: np.ndarray, agree: dict, cfg, seed: int, folder: Path, title: str) -> None:
    """qini.png (a panel per level: the rankings' Qini curves) and calibration.png (true effect by predicted decile)."""
    from causalml.metrics import get_qini

    fig = Figure(figsize=(10, 8))
    for k, ax in enumerate(fig.subplots(2, 2).ravel()):
        frame = level_frame(logs, effect, k, cfg, seed).drop(columns=["oracle"])
        curves = get_qini(frame)
        x = np.arange(len(curves)) / (len(curves) - 1)
        for name in ("uplift", "accept", "plan_model"):
            ax.plot(x, curves[name], label=name)
        ax.plot([0, 1], [0, curves["uplift"].iloc[-1]], "--", color="grey", label="random")
        ax.set(title=f"offer level {k} ({cfg.offer_pcts[k]:.0%})", xlabel="share of rows, highest score first",
               ylabel="incremental customers retained")
        ax.legend(fontsize=8)
    fig.suptitle(f"Qini on held-out simulated logs: {title}")
    fig.tight_layout()
    fig.savefig(folder / "qini.png", dpi=100)

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    cal = agree["calibration"]
    low, high = min(cal["predicted"] + cal["true"]), max(cal["predicted"] + cal["true"])
    ax.plot([low, high], [low, high], "k:", label="perfect")
    ax.plot(cal["predicted"], cal["true"], "o-", label=f"deciles (Spearman {agree['spearman_pooled']:.2f})")
    ax.set(xlabel="predicted churn prevented", ylabel="true churn prevented")
    ax.set_title(f"Effect calibration by decile\n{title}", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "calibration.png", dpi=100)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started = time.perf_counter()
    profile = PROFILES[args.profile]
    cfg = load_config({"artifact_root": args.artifact_root, "data_dir": args.data_dir, "world": args.world})
    risk_dir = args.risk_model or champion_dir(args.artifact_root, "risk")
    accept_dir = args.accept_model or champion_dir(args.artifact_root, "accept")

    # cohort: real Telco customers scored by the champions (a sample for smoke runs)
    cohort = env.telco_cohort(args.data_dir, risk_dir, accept_dir, FIRST_DAY, args.seed, cfg)
    if profile["customers"]:  # a sample, the day's budget scaled with it
        cfg = dataclasses.replace(cfg, daily_budget=cfg.daily_budget * profile["customers"] / len(cohort))
        cohort = cohort.sample(profile["customers"], random_state=args.seed)
    sim = env.Simulator(cohort, env.AcceptTable(AcceptModel.load(accept_dir)), cfg, horizon=env.RISK_DAYS,
                        world=named_world(cfg))
    log.info("cohort: %d customers, world %s, holdout share %.2f, logging epsilon %.2f", len(cohort), cfg.world,
             cfg.holdout_share, args.epsilon)

    # logs: training and held-out episodes on disjoint seeds
    train = simulated_logs(sim, TRAIN_SEED, profile["episodes"], args.epsilon)
    test = simulated_logs(sim, TEST_SEED, profile["test_episodes"], UNIFORM)
    log.info("logs: %d training rows (%d control), %d held-out rows; retained %.3f", len(train),
             int((train["arm"] == CONTROL).sum()), len(test), train["retained"].mean())

    # fit: the DR-learner with the logged propensities
    fit_started = time.perf_counter()
    model = UpliftModel(n_estimators=profile["n_estimators"], random_state=args.seed)
    model.fit(train, train["arm"].to_numpy(), train["retained"].to_numpy(),
              train[[f"p_{k}" for k in range(LEVELS)]].to_numpy(), cfg.holdout_share)
    log.info("fitted the DR-learner in %.1f s", time.perf_counter() - fit_started)

    # evaluation on the held-out episodes
    effect = model.predict(test)
    qini = qini_table(test, effect, cfg, args.seed)
    agree = agreement(test, effect)
    verdict = gate(qini, agree, args.min_spearman)
    decisions = decision_value(test, effect, cfg, cfg.daily_budget)
    log.info("held-out mean Qini: %s", qini["mean"]["qini"])
    log.info("Spearman with the true effect: per level %s, pooled %.3f; calibration slope %.2f",
             {k: round(v, 3) for k, v in agree["spearman"].items()}, agree["spearman_pooled"],
             agree["calibration"]["slope_true_on_predicted"])
    log.info("greedy decisions, true net per customer-day: %s", decisions)

    # save
    version = new_version()
    out = version_dir(args.artifact_root, NAME, version)
    model.save(out, version)
    plots(test, effect, agree, cfg, args.seed, out, f"{NAME} {version} ({cfg.world})")
    test[["episode", "customer_id", *NUMERIC, "channel", "arm", "retained"]].assign(
        **{f"uplift_{k}": effect[:, k] for k in range(LEVELS)},
        **{f"true_{k}": test[f"true_{k}"] for k in range(LEVELS)}).to_parquet(out / "test_effects.parquet")
    report = {"model": NAME, "version": version, "profile": args.profile, "seed": args.seed,
              "params": model.get_params(), "learner": "causalml BaseDRRegressor (XGBoost), logged propensities",
              "risk_model": str(risk_dir), "accept_model": str(accept_dir),
              "world": dataclasses.asdict(named_world(cfg)), "epsilon": args.epsilon,
              "holdout_share": cfg.holdout_share, "outcome_horizon_days": env.RISK_DAYS,
              "rows": {"train": len(train), "train_control": int((train["arm"] == CONTROL).sum()),
                       "test": len(test), "episodes": profile["episodes"], "test_episodes": profile["test_episodes"]},
              "qini": qini, "true_effect": agree, "decisions": decisions, "gate": verdict,
              "seconds": round(time.perf_counter() - started, 1)}
    (out / METRICS).write_text(json.dumps(report, indent=2))  # last: marks a finished run
    log.info("wrote %s (%.1f s)", out, report["seconds"])
    summary = (f"mean Qini uplift {verdict['qini_uplift']:.4f} vs accept {verdict['qini_accept']:.4f} vs random "
               f"{verdict['qini_random']:.4f}; Spearman {verdict['spearman_pooled']:.3f} (>= {args.min_spearman})")
    return promote_if_passed(args.artifact_root, NAME, version, verdict["passed"], summary, args.no_promote)


if __name__ == "__main__":
    sys.exit(main())
