"""Decision rules without learning: the greedy expected-value rule (the plan's default without a policy champion),
and the no-contact and top-risk rules the policy is measured against."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from retention.config import Config
from retention.deciding.rules import (LEVELS, REASON, accept_probs, action_values, budget_pass, expected_values,
                                      followup_days, message_costs, offer_costs, plan_frame, reason_codes)
from retention.hashing import holdout_mask

POLICY_MODEL = "greedy_ev"
"""policy_model recorded for the greedy expected-value rule."""
GREEDY_FOLLOWUP = 1
"""The rules' follow-up choice: one follow-up as soon as the cooldown allows (rules.followup_days)."""


@dataclass(frozen=True)
class GreedyRule:
    """A rule champion: greedy EV with one fixed follow-up choice, promoted when no learned policy beat the
    strongest rule in every simulated world (training/train_policy.py)."""
    followup: int
    version: str

    def decide(self, day: pd.DataFrame, cfg: Config) -> pd.DataFrame:
        return decide_greedy(day, cfg, self.followup, f"{POLICY_MODEL}:{self.version}")


def decide_greedy(day: pd.DataFrame, cfg: Config, followup: int = GREEDY_FOLLOWUP,
                  model: str = POLICY_MODEL) -> pd.DataFrame:
    """The greedy expected-value rule under the hard rules; `day` plus the decision columns.

    followup: the follow-up choice every contact gets (0 none, j >= 1 `rules.followup_days`).

    Round r offers every unfunded eligible customer their best untried level with positive EV and runs the
    budget pass over those offers with what is left; a customer whose best offer did not fit falls back to a
    cheaper one in the next round (at most one round per level).
    """
    n = len(day)
    rows = np.arange(n)
    holdout = holdout_mask(day["customer_id"], cfg.holdout_share)
    reason = reason_codes(day, cfg, holdout)
    accept, message_cost = accept_probs(day), message_costs(day, cfg)  # once: each is a pass over the whole day
    ev, cost = expected_values(day, cfg, accept, message_cost), offer_costs(day, cfg, message_cost)
    open_ev = np.where((reason == 0)[:, None] & (ev > 0), ev, -np.inf)  # (n, 4) offers still on the table
    candidate = np.isfinite(open_ev).any(axis=1)

    contact, level, spent = np.zeros(n, dtype=bool), ev.argmax(axis=1), 0.0
    for _ in range(LEVELS):
        lvl = open_ev.argmax(axis=1)  # ties go to the lower, cheaper level
        best, best_cost = open_ev[rows, lvl], cost[rows, lvl]
        offered = ~contact & np.isfinite(best)
        if not offered.any():
            break
        take = np.zeros(n, dtype=bool)
        take[offered] = budget_pass(best[offered], best_cost[offered], cfg.daily_budget - spent)
        contact |= take
        level = np.where(take, lvl, level)
        spent += float(best_cost[take].sum())
        open_ev[rows[offered], lvl[offered]] = -np.inf  # tried: funded, or did not fit
    reason = np.where(reason != 0, reason,
                      np.where(contact, REASON["contact"], np.where(candidate, REASON["budget"], REASON["low_value"])))

    delay = np.full(n, followup)
    expected = action_values(ev[rows, level], accept[rows, level], followup_days(delay, cfg))
    return plan_frame(day, cfg, contact, level, delay, np.ones(n), holdout, reason, model, expected, message_cost)


def no_contact(day: pd.DataFrame, cfg: Config, ds=None) -> pd.DataFrame:
    """Nobody is contacted."""
    n = len(day)
    holdout = holdout_mask(day["customer_id"], cfg.holdout_share)
    reason = reason_codes(day, cfg, holdout)
    return plan_frame(day, cfg, np.zeros(n, dtype=bool), np.zeros(n, np.int64), np.zeros(n, np.int64), np.ones(n),
                      holdout, np.where(reason != 0, reason, REASON["low_value"]), "no_contact")


def top_risk(day: pd.DataFrame, cfg: Config, ds=None) -> pd.DataFrame:
    """The riskiest eligible customers get the richest offer, in order of churn_risk, while the budget lasts."""
    n, top = len(day), LEVELS - 1
    holdout = holdout_mask(day["customer_id"], cfg.holdout_share)
    reason = reason_codes(day, cfg, holdout)
    eligible = reason == 0
    contact = np.zeros(n, dtype=bool)
    contact[eligible] = budget_pass(day["churn_risk"].to_numpy()[eligible],
                                    offer_costs(day, cfg)[eligible, top], cfg.daily_budget)
    reason = np.where(reason != 0, reason, np.where(contact, REASON["contact"], REASON["budget"]))
    return plan_frame(day, cfg, contact, np.full(n, top), np.full(n, GREEDY_FOLLOWUP), np.ones(n), holdout, reason,
                      "top_risk")
