"""The decision policy in the daily plan: the champion loaded, rolled forward over a day's candidates under the hard
rules, and evaluated against the baselines in the simulator with the same seeds.

`rollout` is what `plan.decide` runs when a policy is given: candidates (not suppressed, not in the holdout) are
queued by revenue at stake (churn_risk x customer_value), decided `block` rows per forward pass with the budget
left as state, sampled with noise keyed by (ds, customer_id), and masked so that no rule can break whatever the
network says: ineligible rows are never contacted and an offer that no longer fits the budget left at the row's
turn cannot be drawn. `propensity` is the probability of the joint action taken under those masks.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from retention import plan
from retention.config import Config
from retention.env import DELAYS, NOISE, Decisions, Simulator, candidate_order, decide_day, observe
from retention.ppo import Agent

MODEL_FILE = "policy.pt"
CONFIG_FILE = "policy.json"
BLOCK = 1024
"""Candidates per forward pass: the budget state the policy sees is refreshed once per block."""
RANDOM = "random"

_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


@dataclass(frozen=True)
class Policy:
    """A rule `rollout` can run: logits for a block of states, a version for the logs, rows per forward pass."""
    logits: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
    version: str
    block: int = BLOCK


def agent_policy(agent: Agent, version: str, block: int = BLOCK) -> Policy:
    """The trained network as a Policy (inference only)."""
    agent = agent.eval()

    def logits(obs: np.ndarray):
        with torch.inference_mode():
            return tuple(x.double().numpy() for x in agent.logits(torch.from_numpy(obs)))
    return Policy(logits, version, block)


def uniform_policy(block: int = BLOCK) -> Policy:
    """The random baseline: every legal action equally likely (per head)."""
    def logits(obs: np.ndarray):
        n = len(obs)
        return np.zeros((n, 2)), np.zeros((n, plan.LEVELS)), np.zeros((n, DELAYS))
    return Policy(logits, RANDOM, block)


def save_policy(agent: Agent, directory: str | Path, version: str, config: dict) -> None:
    """policy.pt (state dict) and policy.json (version, block, network sizes, training config)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(agent.state_dict(), directory / MODEL_FILE)
    meta = {"version": version, "block": config.get("block", BLOCK), "hidden": agent.hidden, "config": config}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2, default=str))


def load_policy(directory: str | Path) -> Policy | None:
    """The policy saved in `directory` (e.g. cfg.model_dir("policy")), or None when none is there (greedy rule)."""
    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file():
        return None
    meta = json.loads((directory / CONFIG_FILE).read_text())
    agent = Agent(hidden=meta["hidden"])
    agent.load_state_dict(torch.load(directory / MODEL_FILE, weights_only=True))
    return agent_policy(agent, meta["version"], meta["block"])


# rollout


def decision_noise(hashes: np.ndarray, ds: dt.date) -> np.ndarray:
    """(n, NOISE) uniforms in (0, 1) keyed by (customer hash, ds): a customer's draw does not depend on row order."""
    day = np.full(1, ds.toordinal(), dtype=np.uint64) * _MIX[0]  # arrays wrap on overflow, as the hash wants
    z = (hashes[:, None] ^ day) + np.arange(NOISE, dtype=np.uint64) * _MIX[1]
    z = (z ^ (z >> np.uint64(30))) * _MIX[1]  # SplitMix64 finaliser
    z = (z ^ (z >> np.uint64(27))) * _MIX[2]
    z ^= z >> np.uint64(31)
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def _as_date(ds) -> dt.date:
    return dt.date.fromisoformat(str(ds)[:10])


@dataclass
class Rolled:
    """A rollout before it becomes a frame: queue rows (processing order), their decisions, and the day's rules."""
    queue: np.ndarray
    decisions: Decisions
    holdout: np.ndarray
    reason: np.ndarray


def roll(day: pd.DataFrame, cfg: Config, policy: Policy, ds, propose: bool = False) -> Rolled:
    """Run `policy` over the day's candidates in order under the hard rules (see the module docstring)."""
    hashes = plan.stable_hash(day["customer_id"])
    holdout = plan.unit_interval(hashes) < cfg.holdout_share  # plan.holdout_mask without hashing twice
    reason = plan._reasons(day, cfg, holdout)
    queue = np.flatnonzero((reason != "suppressed") & (reason != "holdout"))
    risk, value = day["churn_risk"].to_numpy(dtype=np.float64), day["customer_value"].to_numpy(dtype=np.float64)
    queue = queue[candidate_order(risk[queue], value[queue])]
    accept = day[[f"accept_prob_{k}" for k in range(plan.LEVELS)]].to_numpy(dtype=np.float64)[queue]
    obs = observe(risk[queue], accept, day["days_since_contact"].to_numpy()[queue],
                  day["contacts_in_window"].to_numpy()[queue], cfg)
    costs = value[queue, None] * np.asarray(cfg.offer_pcts) + cfg.channel_cost  # plan.offer_costs of the queue
    decisions = decide_day(obs, costs, reason[queue] == "", cfg.daily_budget,
                           decision_noise(hashes[queue], _as_date(ds)), policy.logits, policy.block, propose)
    return Rolled(queue, decisions, holdout, reason)


def rollout(day: pd.DataFrame, cfg: Config, policy: Policy, ds) -> pd.DataFrame:
    """`day` plus the decision columns of `plan.decide_greedy`, decided by `policy` (ds seeds the sampling)."""
    return rollout_frame(day, cfg, policy, roll(day, cfg, policy, ds))


def rollout_frame(day: pd.DataFrame, cfg: Config, policy: Policy, r: Rolled) -> pd.DataFrame:
    """The plan frame of a finished roll: queue decisions scattered back, the rest not contacted (propensity 1)."""
    d, n = r.decisions, len(day)
    contact, level, delay, propensity = np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64), np.ones(n)
    contact[r.queue], level[r.queue], delay[r.queue], propensity[r.queue] = d.contact, d.level, d.delay, np.exp(d.logp)
    ev = plan.expected_values(day, cfg)
    no_offer = np.ones(n, dtype=bool)
    no_offer[r.queue] = ~d.contact_ok[:, 1]
    reason, chose = r.reason.copy(), r.reason == ""  # eligible rows: why contacted or not
    reason[chose & contact] = "contact"
    reason[chose & ~contact & no_offer] = "budget"
    reason[chose & ~contact & ~no_offer] = np.where(ev[chose & ~contact & ~no_offer].max(axis=1) > 0, "wait",
                                                    "low_value")
    return plan_frame(day, cfg, contact, level, delay, propensity, r.holdout, reason, policy.version, ev)


def plan_frame(day, cfg: Config, contact, level, delay, propensity, holdout, reason, model: str,
               ev: np.ndarray | None = None) -> pd.DataFrame:
    """`day` plus the decision columns, in the layout `plan.decide_greedy` writes (ev: plan.expected_values)."""
    rows, pct = np.arange(len(day)), np.asarray(cfg.offer_pcts)[level]
    ev = plan.expected_values(day, cfg) if ev is None else ev
    return day.assign(
        contact=contact,
        offer_level=pd.arrays.IntegerArray(np.asarray(level, dtype=np.int64), ~contact),
        offer_pct=np.where(contact, pct, np.nan),
        offer_cost=np.where(contact, day["customer_value"].to_numpy(dtype=np.float64) * pct + cfg.channel_cost, 0.0),
        followup_days=pd.arrays.IntegerArray(np.asarray(delay, dtype=np.int64), ~contact),
        expected_value=np.where(contact, ev[rows, level], 0.0),
        propensity=np.asarray(propensity, dtype=np.float64),
        holdout=holdout,
        decision_reason=pd.array(reason, dtype="str"),
        policy_model=model,
    )


# baselines


def no_contact(day: pd.DataFrame, cfg: Config, ds=None) -> pd.DataFrame:
    """Nobody is contacted."""
    n = len(day)
    holdout = plan.holdout_mask(day["customer_id"], cfg.holdout_share)
    reason = plan._reasons(day, cfg, holdout)
    return plan_frame(day, cfg, np.zeros(n, dtype=bool), np.zeros(n, np.int64), np.zeros(n, np.int64), np.ones(n),
                      holdout, np.where(reason != "", reason, "low_value"), "no_contact")


def top_risk(day: pd.DataFrame, cfg: Config, ds=None) -> pd.DataFrame:
    """The riskiest eligible customers get the richest offer, in order of churn_risk, while the budget lasts."""
    n, top = len(day), plan.LEVELS - 1
    holdout = plan.holdout_mask(day["customer_id"], cfg.holdout_share)
    reason = plan._reasons(day, cfg, holdout)
    eligible = reason == ""
    contact = np.zeros(n, dtype=bool)
    contact[eligible] = plan.budget_pass(day["churn_risk"].to_numpy()[eligible],
                                         plan.offer_costs(day, cfg)[eligible, top], cfg.daily_budget)
    reason = np.where(reason != "", reason, np.where(contact, "contact", "budget"))
    return plan_frame(day, cfg, contact, np.full(n, top), np.full(n, cfg.cooldown_days), np.ones(n), holdout, reason,
                      "top_risk")


# evaluation in the simulator


def _proposal_breaks(r: Rolled) -> int:
    """Decisions whose unmasked draw breaks a rule: a contact in cooldown or at the cap, an offer over the budget."""
    d = r.decisions
    contact, level = d.proposal[:, 0] == 1, d.proposal[:, 1]
    over = ~d.affordable[np.arange(len(level)), level]
    return int((contact & ((r.reason[r.queue] != "") | over)).sum())


def policy_decider(policy: Policy) -> Callable:
    """(day, cfg, ds) -> (plan, proposal breaks) for a learned or the random policy."""
    def decide(day, cfg, ds):
        r = roll(day, cfg, policy, ds, propose=True)
        return rollout_frame(day, cfg, policy, r), _proposal_breaks(r)
    return decide


def _rules(planned: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(candidate, eligible) from a plan's decision_reason: candidates are neither suppressed nor in the holdout."""
    reason = planned["decision_reason"].to_numpy()
    candidate = (reason != "suppressed") & (reason != "holdout")
    return candidate, candidate & (reason != "cooldown") & (reason != "fatigue")


def greedy_decider(day, cfg, ds):
    """The spine's greedy EV plan; its proposal is every positive-EV candidate at its best level, rules unchecked."""
    planned = plan.decide_greedy(day, cfg)
    candidate, eligible = _rules(planned)
    ev, cost = plan.expected_values(day, cfg), plan.offer_costs(day, cfg)
    best = ev.argmax(axis=1)
    rows = np.flatnonzero(candidate & (ev.max(axis=1) > 0))
    rows = rows[np.argsort(-ev[rows, best[rows]], kind="stable")]
    over = np.cumsum(cost[rows, best[rows]]) > cfg.daily_budget + plan.BUDGET_TOL
    return planned, int((over | ~eligible[rows]).sum())


def top_risk_decider(day, cfg, ds):
    """Top-risk plan; its proposal takes the riskiest candidates while the budget lasts, rules unchecked."""
    planned = top_risk(day, cfg)
    candidate, eligible = _rules(planned)
    rows = np.flatnonzero(candidate)
    rows = rows[np.argsort(-day["churn_risk"].to_numpy()[rows], kind="stable")]
    taken = np.cumsum(plan.offer_costs(day, cfg)[rows, plan.LEVELS - 1]) <= cfg.daily_budget
    return planned, int((taken & ~eligible[rows]).sum())


def no_contact_decider(day, cfg, ds):
    return no_contact(day, cfg), 0


def simulate(sim: Simulator, decider: Callable, seed: int, start: dt.date) -> dict:
    """One episode of `decider` in the simulator: totals of money, contacts and rule breaks."""
    sim.reset(seed, start)
    keys = ("net", "paid", "spend", "retained", "accepted", "contacts", "decisions", "before", "after")
    tot = dict.fromkeys(keys, 0.0)
    while not sim.done:
        day = sim.day_frame()
        planned, breaks = decider(day, sim.cfg, sim.today)
        contact = planned["contact"].to_numpy(dtype=bool)
        out = sim.contact(day.index.to_numpy()[contact], planned["offer_level"].to_numpy()[contact].astype(np.int64),
                          planned["followup_days"].to_numpy()[contact].astype(np.int64))
        follow, _ = sim.advance()
        for o in (out, follow):
            tot["net"] += o.realized.sum()
            tot["paid"] += o.paid.sum()
            tot["retained"] += o.retained.sum()
            tot["accepted"] += o.accepted.sum()
        tot["spend"] += planned.loc[contact, "offer_cost"].sum()
        tot["contacts"] += contact.sum()
        tot["decisions"] += len(day)
        tot["before"] += breaks
        tot["after"] += sum(plan.violations(planned, sim.cfg).values())
    return {k: float(v) for k, v in tot.items()}


def evaluate(sim: Simulator, deciders: dict[str, Callable], episodes: list[tuple[int, dt.date]]) -> list[dict]:
    """Every decider on the same (seed, start) episodes; one row per decider, money as the mean per episode."""
    rows = []
    for name, decider in deciders.items():
        runs = [simulate(sim, decider, seed, start) for seed, start in episodes]
        total = {k: sum(r[k] for r in runs) for k in runs[0]}
        net = [r["net"] for r in runs]
        rows.append({
            "policy": name,
            "net_revenue_retained": round(total["net"] / len(runs), 2),
            "roi": round(total["net"] / total["paid"], 3) if total["paid"] > 0 else None,
            "contact_rate": round(total["contacts"] / total["decisions"], 5),
            "retained_customers": round(total["retained"] / len(runs), 2),
            "violations_before": round(1000 * total["before"] / total["decisions"], 3),
            "violations_after": round(1000 * total["after"] / total["decisions"], 3),
            "accepted": round(total["accepted"] / len(runs), 2),
            "spend": round(total["spend"] / len(runs), 2),
            "net_revenue_retained_by_episode": [round(x, 2) for x in net],
        })
    return rows


def evaluation_table(rows: list[dict]) -> str:
    """The evaluation as a fixed-width text table."""
    cols = ("policy", "net_revenue_retained", "roi", "contact_rate", "retained_customers", "violations_before",
            "violations_after", "spend")
    cells = [[str(c) for c in cols]] + [["-" if r[c] is None else f"{r[c]:,}" if isinstance(r[c], float) else
                                         str(r[c]) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths)))
                     for row in cells)
