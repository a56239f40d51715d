"""The decide stage: the trained policy's rollout when a champion exists, else the greedy expected-value rule."""
from __future__ import annotations

import pandas as pd

from retention.config import Config
from retention.deciding.greedy import decide_greedy


def decide_plan(day: pd.DataFrame, cfg: Config, policy=None, ds=None) -> pd.DataFrame:
    """The decide stage: the trained policy's rollout when one is passed (sampling seeded by ds), else greedy EV."""
    if policy is None:
        return decide_greedy(day, cfg)
    from retention.deciding.policy import Policy, rollout  # torch loads only when a policy is used

    if not isinstance(policy, Policy):
        raise ValueError("decide: policy must be a trained PPO "
                         f"retention.deciding.policy.Policy, not {type(policy).__name__}")
    if ds is None:
        raise ValueError("decide: a policy samples its decisions with a seed from ds; pass ds")
    return rollout(day, cfg, policy, ds)
