"""The decide stage: the policy champion's rollout, the rule champion (greedy EV with its follow-up) when the
learned policy did not earn its place, else greedy EV with the default follow-up."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from retention.config import Config
from retention.deciding.greedy import GreedyRule, greedy_decided
from retention.deciding.rules import Decided


def decide_plan(day: pd.DataFrame, cfg: Config, policy=None, ds=None, budget_left: float | None = None,
                rank: np.ndarray | None = None) -> pd.DataFrame:
    """The decide stage: the policy champion's rollout when one is passed (sampling seeded by ds), the rule champion,
    or greedy EV; `day` plus the plan's decision columns (see `decide_rows`)."""
    return decide_rows(day, cfg, policy, ds, budget_left, rank).frame(day, cfg)


def decide_rows(day: pd.DataFrame, cfg: Config, policy=None, ds=None, budget_left: float | None = None,
                rank: np.ndarray | None = None) -> Decided:
    """The decide stage's choice for each row of `day` (`decide_plan` without the plan frame, which the daily run
    builds chunk by chunk). budget_left: what is left of cfg.daily_budget for these rows (all of it by default).
    rank: each row's place in the day's canonical order (the daily run passes its customer_id order), where the
    deciders break ties that they would otherwise break by position: the plan then does not depend on the order of
    the rows."""
    rule_cfg = cfg if budget_left is None else dataclasses.replace(cfg, daily_budget=budget_left)
    if policy is None:
        return greedy_decided(day, rule_cfg, rank=rank)
    if isinstance(policy, GreedyRule):
        return policy.decided(day, rule_cfg, rank)
    from retention.deciding.policy import Policy, roll, rollout_decided  # torch loads only when a policy is used

    if not isinstance(policy, Policy):
        raise ValueError("decide: policy must be a trained PPO "
                         f"retention.deciding.policy.Policy, not {type(policy).__name__}")
    if ds is None:
        raise ValueError("decide: a policy samples its decisions with a seed from ds; pass ds")
    return rollout_decided(len(day), cfg, policy, roll(day, cfg, policy, ds, budget_left=budget_left, rank=rank,
                                                      plan_only=True))
