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
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from retention import plan
from retention.config import Config
from retention.env import Simulator
from retention.sampler import DELAYS, NOISE, Decisions, candidate_order, decide_day, observe
from retention.ppo import Agent

MODEL_FILE = "policy.pt"
CONFIG_FILE = "policy.json"
BLOCK = 1024
"""Candidates per forward pass: the budget state the policy sees is refreshed once per block."""
RANDOM = "random"

_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
_NOISE_CHUNK = 8192


@dataclass(frozen=True)
class Policy:
    """A rule `rollout` can run: logits for a block of states, a version for the logs, rows per forward pass."""
    logits: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
    version: str
    block: int = BLOCK


def agent_policy(agent: Agent, version: str, block: int = BLOCK) -> Policy:
    """The trained network as a Policy (inference only): float32 forward on one thread, float64 logits out."""
    agent = agent.eval()

    def logits(obs: np.ndarray):
        threads = torch.get_num_threads()
        # a block is too small to share: between blocks the other threads go idle, and waking them on a busy machine
        # cost 15-60 ms per block instead of 0.5 ms on 2 shared cores; one thread also makes the logits independent
        # of the machine's core count (here 1 and 2 threads gave the same bits)
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                out = agent.inference_logits(torch.from_numpy(obs))
        finally:
            torch.set_num_threads(threads)
        return tuple(x.numpy().astype(np.float64) for x in out)
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
    """(n, NOISE) uniforms in (0, 1) keyed by (customer hash, ds): a customer's draw does not depend on row order.

    Column-major, so that each kind of draw reads one contiguous column.
    """
    day = np.full(1, ds.toordinal(), dtype=np.uint64) * _MIX[0]  # arrays wrap on overflow, as the hash wants
    step = np.arange(NOISE, dtype=np.uint64) * _MIX[1]
    u = np.empty((len(hashes), NOISE), order="F")
    for s in range(0, len(hashes), _NOISE_CHUNK):  # a chunk stays in cache through all the integer steps
        z = (hashes[s:s + _NOISE_CHUNK, None] ^ day) + step
        z ^= z >> np.uint64(30)  # SplitMix64 finaliser
        z *= _MIX[1]
        z ^= z >> np.uint64(27)
        z *= _MIX[2]
        z ^= z >> np.uint64(31)
        u[s:s + _NOISE_CHUNK] = z >> np.uint64(11)
    u += 0.5
    u /= 2.0**53
    return u


def _as_date(ds) -> dt.date:
    return dt.date.fromisoformat(str(ds)[:10])


@dataclass
class Rolled:
    """A rollout before it becomes a frame: queue rows (processing order), their decisions, and the day's rules."""
    queue: np.ndarray
    decisions: Decisions
    holdout: np.ndarray
    code: np.ndarray
    """The first hard rule each row breaks, as an index into plan.REASONS (0: none)."""
    ev: np.ndarray
    """(queue, 4) plan.expected_values of the queue rows."""

    @property
    def reason(self) -> np.ndarray:
        """The first hard rule each row breaks, "" where none does."""
        return np.asarray(plan.REASONS)[self.code]


def roll(day: pd.DataFrame, cfg: Config, policy: Policy, ds, propose: bool = False) -> Rolled:
    """Run `policy` over the day's candidates in order under the hard rules (see the module docstring)."""
    hashes = plan.stable_hash(day["customer_id"])
    holdout = plan.unit_interval(hashes) < cfg.holdout_share  # plan.holdout_mask without hashing twice
    code = plan.reason_codes(day, cfg, holdout)
    queue = np.flatnonzero((code != plan.REASON["suppressed"]) & (code != plan.REASON["holdout"]))
    risk = day["churn_risk"].to_numpy(dtype=np.float64)[queue]
    value = day["customer_value"].to_numpy(dtype=np.float64)[queue]
    order = candidate_order(risk, value)
    queue, risk, value = queue[order], risk[order], value[order]
    accept = plan.accept_probs(day, queue)
    obs = observe(risk, accept, day["days_since_contact"].to_numpy()[queue],
                  day["contacts_in_window"].to_numpy()[queue], cfg)
    costs = value[:, None] * np.asarray(cfg.offer_pcts) + cfg.channel_cost  # plan.offer_costs of the queue
    decisions = decide_day(obs, costs, code[queue] == 0, cfg.daily_budget,
                           decision_noise(hashes[queue], _as_date(ds)), policy.logits, policy.block, propose)
    return Rolled(queue, decisions, holdout, code, plan.offer_values(accept, value, risk, cfg))


def rollout(day: pd.DataFrame, cfg: Config, policy: Policy, ds) -> pd.DataFrame:
    """`day` plus the decision columns of `plan.decide_greedy`, decided by `policy` (ds seeds the sampling)."""
    return rollout_frame(day, cfg, policy, roll(day, cfg, policy, ds))


def rollout_frame(day: pd.DataFrame, cfg: Config, policy: Policy, r: Rolled) -> pd.DataFrame:
    """The plan frame of a finished roll: queue decisions scattered back, the rest not contacted (propensity 1)."""
    d, n, q = r.decisions, len(day), r.queue
    contact, level, delay, propensity = np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64), np.ones(n)
    contact[q], level[q], delay[q], propensity[q] = d.contact, d.level, d.delay, np.exp(d.logp)
    # eligible rows (all in the queue): why contacted or not
    code = r.code[q]
    chose = code == 0
    passed = chose & ~d.contact & d.contact_ok[:, 1]  # could have, did not
    code[d.contact] = plan.REASON["contact"]
    code[chose & ~d.contact & ~d.contact_ok[:, 1]] = plan.REASON["budget"]
    best = functools.reduce(np.maximum, r.ev[passed].T)  # = max(axis=1), a column at a time
    code[passed] = np.where(best > 0, plan.REASON["wait"], plan.REASON["low_value"])
    expected = np.zeros(n)
    expected[q[d.contact]] = r.ev[d.contact, d.level[d.contact]]
    reason = r.code.copy()
    reason[q] = code
    return plan_frame(day, cfg, contact, level, delay, propensity, r.holdout, reason, policy.version, expected)


def plan_frame(day, cfg: Config, contact, level, delay, propensity, holdout, reason, model: str,
               expected: np.ndarray | None = None) -> pd.DataFrame:
    """`day` plus the decision columns, in the layout `plan.decide_greedy` writes.

    reason: indices into plan.REASONS; expected: each row's expected value at `level` (read where contacted only;
    plan.expected_values by default).
    """
    pct = np.asarray(cfg.offer_pcts)[level]
    if expected is None:
        expected = plan.expected_values(day, cfg)[np.arange(len(day)), level]
    return day.assign(
        contact=contact,
        offer_level=pd.arrays.IntegerArray(np.asarray(level, dtype=np.int64), ~contact),
        offer_pct=np.where(contact, pct, np.nan),
        offer_cost=np.where(contact, day["customer_value"].to_numpy(dtype=np.float64) * pct + cfg.channel_cost, 0.0),
        followup_days=pd.arrays.IntegerArray(np.asarray(delay, dtype=np.int64), ~contact),
        expected_value=np.where(contact, expected, 0.0),
        propensity=np.asarray(propensity, dtype=np.float64),
        holdout=holdout,
        decision_reason=plan.reason_column(reason),
        policy_model=model,
    )


# baselines


def no_contact(day: pd.DataFrame, cfg: Config, ds=None) -> pd.DataFrame:
    """Nobody is contacted."""
    n = len(day)
    holdout = plan.holdout_mask(day["customer_id"], cfg.holdout_share)
    reason = plan.reason_codes(day, cfg, holdout)
    return plan_frame(day, cfg, np.zeros(n, dtype=bool), np.zeros(n, np.int64), np.zeros(n, np.int64), np.ones(n),
                      holdout, np.where(reason != 0, reason, plan.REASON["low_value"]), "no_contact")


def top_risk(day: pd.DataFrame, cfg: Config, ds=None) -> pd.DataFrame:
    """The riskiest eligible customers get the richest offer, in order of churn_risk, while the budget lasts."""
    n, top = len(day), plan.LEVELS - 1
    holdout = plan.holdout_mask(day["customer_id"], cfg.holdout_share)
    reason = plan.reason_codes(day, cfg, holdout)
    eligible = reason == 0
    contact = np.zeros(n, dtype=bool)
    contact[eligible] = plan.budget_pass(day["churn_risk"].to_numpy()[eligible],
                                         plan.offer_costs(day, cfg)[eligible, top], cfg.daily_budget)
    reason = np.where(reason != 0, reason, np.where(contact, plan.REASON["contact"], plan.REASON["budget"]))
    return plan_frame(day, cfg, contact, np.full(n, top), np.full(n, cfg.cooldown_days), np.ones(n), holdout, reason,
                      "top_risk")


# evaluation in the simulator


def _proposal_breaks(r: Rolled) -> int:
    """Decisions whose unmasked draw breaks a rule: a contact in cooldown or at the cap, an offer over the budget."""
    d = r.decisions
    contact, level = d.proposal[:, 0] == 1, d.proposal[:, 1]
    over = ~d.affordable[np.arange(len(level)), level]
    return int((contact & ((r.code[r.queue] != 0) | over)).sum())


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
