"""The decide stage: the policy champion's rollout, the rule champion (greedy EV with its follow-up) when the
learned policy did not earn its place, else greedy EV with the default follow-up."""
from __future__ import annotations

import dataclasses

import pandas as pd

from retention.config import Config
from retention.deciding.greedy import GreedyRule, decide_greedy


def decide_plan(day: pd.DataFrame, cfg: Config, policy=None, ds=None, budget_left: float | None = None) -> pd.DataFrame:
    """The decide stage: the policy champion's rollout when one is passed (sampling seeded by ds), the rule champion,
    or greedy EV. budget_left: what is left of cfg.daily_budget for these rows (all of it by default)."""
    rule_cfg = cfg if budget_left is None else dataclasses.replace(cfg, daily_budget=budget_left)
    if policy is None:
        return decide_greedy(day, rule_cfg)
    if isinstance(policy, GreedyRule):
        return policy.decide(day, rule_cfg)
    from retention.deciding.policy import Policy, rollout  # torch loads only when a policy is used

    if not isinstance(policy, Policy):
        raise ValueError("decide: policy must be a trained PPO "
                         f"retention.deciding.policy.Policy, not {type(policy).__name__}")
    if ds is None:
        raise ValueError("decide: a policy samples its decisions with a seed from ds; pass ds")
    return rollout(day, cfg, policy, ds, budget_left)
