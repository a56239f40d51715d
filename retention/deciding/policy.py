"""The decision policy in the daily plan: the champion loaded (the network, or the rule its gate chose instead) and
rolled forward over a day's candidates under the hard rules. Its evaluation lives in `simulation/evaluate.py`.

`rollout` is what the decide stage runs when a policy is given: candidates (not suppressed, not in the holdout) are
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

from retention.config import Config
from retention.deciding import rules
from retention.deciding.greedy import GreedyRule
from retention.deciding.network import Agent
from retention.deciding.sampler import (DELAYS, NOISE, OBS, SPAN_ROWS, Decisions, candidate_order, decide_day,
                                       observe)
from retention.hashing import decision_noise, stable_hash, unit_interval

MODEL_FILE = "policy.pt"
CONFIG_FILE = "policy.json"
RULE_FILE = "rule.json"
"""Written instead of promoting the network when it did not beat the strongest rule: the rule is the champion."""
BLOCK = 1024
"""Candidates per forward pass: the budget state the policy sees is refreshed once per block."""
RANDOM = "random"


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
        return np.zeros((n, 2)), np.zeros((n, rules.LEVELS)), np.zeros((n, DELAYS))
    return Policy(logits, RANDOM, block)


def save_policy(agent: Agent, directory: str | Path, version: str, config: dict) -> None:
    """policy.pt (state dict) and policy.json (version, block, network sizes, training config)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(agent.state_dict(), directory / MODEL_FILE)
    meta = {"version": version, "block": config.get("block", BLOCK), "hidden": agent.hidden, "config": config}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2, default=str))


def load_policy(directory: str | Path) -> Policy | GreedyRule | None:
    """The policy champion saved in `directory` (e.g. cfg.model_dir("policy")): the trained network, or the rule
    its evaluation chose instead (rule.json), or None when nothing is there (the default greedy rule)."""
    directory = Path(directory)
    if (directory / RULE_FILE).is_file():
        rule = json.loads((directory / RULE_FILE).read_text())
        return GreedyRule(int(rule["followup"]), rule["version"])
    return load_network(directory)


def load_network(directory: str | Path) -> Policy | None:
    """The PPO network saved in `directory`, whatever the champion is (a run that chose the rule keeps the network
    it trained beside rule.json), or None when there is none."""
    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file():
        return None
    meta = json.loads((directory / CONFIG_FILE).read_text())
    agent = Agent(hidden=meta["hidden"])
    agent.load_state_dict(torch.load(directory / MODEL_FILE, weights_only=True))
    return agent_policy(agent, meta["version"], meta["block"])


# rollout


def _as_date(ds) -> dt.date:
    return dt.date.fromisoformat(str(ds)[:10])


@dataclass
class Rolled:
    """A rollout before it becomes a frame: queue rows (processing order), their decisions, and the day's rules."""
    queue: np.ndarray
    decisions: Decisions
    holdout: np.ndarray
    code: np.ndarray
    """The first hard rule each row breaks, as an index into rules.REASONS (0: none)."""
    ev: np.ndarray
    """(queue, 4) rules.expected_values of the queue rows (one message)."""
    accept: np.ndarray
    """(queue, 4) their acceptance probabilities."""
    message_cost: np.ndarray | None = None
    """(day,) the cost of one message to each row of the day (`rules.message_costs`), when the roll kept it."""

    @property
    def reason(self) -> np.ndarray:
        """The first hard rule each row breaks, "" where none does."""
        return np.asarray(rules.REASONS)[self.code]


@dataclass(frozen=True)
class SpanNoise:
    """The queue's `decision_noise`, made for the rows `decide_day` asks for (it reads u[span] a span at a time): the
    same uniforms, without a whole day's (n, NOISE) array (480 MB at 10M, written at memory speed)."""
    hashes: np.ndarray
    ds: dt.date

    def __getitem__(self, rows: slice) -> np.ndarray:
        return decision_noise(self.hashes[rows], self.ds, NOISE)

    def __len__(self) -> int:
        return len(self.hashes)


def _queue_inputs(day: pd.DataFrame, cfg: Config, queue: np.ndarray, risk: np.ndarray, value: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(obs, ev, accept, costs) of the queue rows in queue order, and the day's message costs. The day's columns
    are gathered and combined SPAN_ROWS rows at a time into the four arrays, so the steps between run on
    cache-sized temporaries (at 10M rows each whole-day temporary costs a fresh mapping and a pass at memory speed).
    Row by row, so the same bits as whole-day steps."""
    n = len(queue)
    columns = [day[f"accept_prob_{k}"].to_numpy(dtype=np.float64) for k in range(rules.LEVELS)]
    days, contacts = day["days_since_contact"].to_numpy(), day["contacts_in_window"].to_numpy()
    message_cost = rules.message_costs(day, cfg)
    lift = rules.uplift_lift(day) if cfg.use_uplift else None
    obs = np.empty((n, len(OBS)), dtype=np.float32)
    ev, accept, costs = (np.empty((n, rules.LEVELS)) for _ in range(3))
    for at in rules.spans(n, SPAN_ROWS):
        q = queue[at]
        a = accept[at] = np.stack([c[q] for c in columns], axis=1)
        obs[at] = observe(risk[at], a, days[q], contacts[q], cfg)
        cost = message_cost[q]
        e = ev[at] = rules.offer_values(a, value[at], risk[at], cost, cfg, None if lift is None else lift[q])
        costs[at] = rules.worth_making(rules.committed_costs(value[at], cost, cfg), e)
    return obs, ev, accept, costs, message_cost


def roll(day: pd.DataFrame, cfg: Config, policy: Policy, ds, propose: bool = False,
         budget_left: float | None = None, rank: np.ndarray | None = None, plan_only: bool = False) -> Rolled:
    """Run `policy` over the day's candidates in order under the hard rules (see the module docstring).

    budget_left: what is left of cfg.daily_budget when the first candidate's turn comes (all of it by default): one
    customer decided with the budget left at their turn in the day's plan gets the plan's decision. rank: each row's
    place in the day's canonical order, which breaks ties in the queue (position when None). plan_only: the
    decisions a plan uses and no more: once no offer left fits the budget left, the rest of the queue is not drawn
    (`decide_day(stop_when_spent=True)`: same plan, delay 0 for those rows instead of one never used).
    """
    hashes = stable_hash(day["customer_id"])
    holdout = unit_interval(hashes) < cfg.holdout_share  # hashing.holdout_mask without hashing twice
    code = rules.reason_codes(day, cfg, holdout)
    queue = np.flatnonzero((code != rules.REASON["suppressed"]) & (code != rules.REASON["holdout"]))
    risk, value = day["churn_risk"].to_numpy(dtype=np.float64), day["customer_value"].to_numpy(dtype=np.float64)
    queue = queue[candidate_order(risk[queue], value[queue], None if rank is None else rank[queue])]
    risk, value = risk[queue], value[queue]
    obs, ev, accept, costs, message_cost = _queue_inputs(day, cfg, queue, risk, value)
    decisions = decide_day(obs, costs, code[queue] == 0, cfg.daily_budget,
                           SpanNoise(hashes[queue], _as_date(ds)), policy.logits, policy.block, propose, budget_left,
                           copy_obs=False, stop_when_spent=plan_only)
    return Rolled(queue, decisions, holdout, code, ev, accept, message_cost)


def rollout(day: pd.DataFrame, cfg: Config, policy: Policy, ds, budget_left: float | None = None,
            rank: np.ndarray | None = None) -> pd.DataFrame:
    """`day` plus the plan's decision columns (`rules.plan_frame`), decided by `policy` (ds seeds the sampling);
    budget_left, rank: see `roll`."""
    return rollout_frame(day, cfg, policy, roll(day, cfg, policy, ds, budget_left=budget_left, rank=rank,
                                                plan_only=True))


def rollout_frame(day: pd.DataFrame, cfg: Config, policy: Policy, r: Rolled) -> pd.DataFrame:
    """The plan frame of a finished roll (`rollout_decided`)."""
    return rollout_decided(len(day), cfg, policy, r).frame(day, cfg)


def rollout_decided(n: int, cfg: Config, policy: Policy, r: Rolled) -> rules.Decided:
    """The choices of a finished roll over a day of n rows: queue decisions scattered back, the rest not contacted
    (propensity 1)."""
    d, q = r.decisions, r.queue
    contact, level, delay, propensity = np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64), np.ones(n)
    contact[q], level[q], delay[q], propensity[q] = d.contact, d.level, d.delay, np.exp(d.logp)
    # eligible rows (all in the queue): why contacted or not
    code = r.code[q]
    chose = code == 0
    passed = chose & ~d.contact & d.contact_ok[:, 1]  # could have, did not
    code[d.contact] = rules.REASON["contact"]
    code[chose & ~d.contact & ~d.contact_ok[:, 1]] = rules.REASON["budget"]
    best = functools.reduce(np.maximum, r.ev[passed].T)  # = max(axis=1), a column at a time
    code[passed] = np.where(best > 0, rules.REASON["wait"], rules.REASON["low_value"])
    expected = np.zeros(n)
    took = np.flatnonzero(d.contact)
    expected[q[took]] = rules.action_values(r.ev[took, d.level[took]], r.accept[took, d.level[took]],
                                            rules.followup_days(d.delay[took], cfg))
    reason = r.code.copy()
    reason[q] = code
    return rules.Decided(contact, level, delay, propensity, r.holdout, reason, policy.version, expected, r.message_cost)
