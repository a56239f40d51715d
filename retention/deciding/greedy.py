"""Decision rules without learning: the greedy expected-value rule (the plan's default without a policy champion),
and the no-contact and top-risk rules the policy is measured against."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from retention.config import Config
from retention.deciding.rules import (LEVELS, REASON, SPAN_ROWS, Decided, accept_probs, action_values, budget_pass,
                                      expected_values, followup_days, message_costs, offer_costs, plan_frame,
                                      reason_codes, spans)
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

    def decide(self, day: pd.DataFrame, cfg: Config, rank: np.ndarray | None = None) -> pd.DataFrame:
        return self.decided(day, cfg, rank).frame(day, cfg)

    def decided(self, day: pd.DataFrame, cfg: Config, rank: np.ndarray | None = None) -> Decided:
        return greedy_decided(day, cfg, self.followup, f"{POLICY_MODEL}:{self.version}", rank=rank)


def decide_greedy(day: pd.DataFrame, cfg: Config, followup: int = GREEDY_FOLLOWUP, model: str = POLICY_MODEL,
                  span: int = SPAN_ROWS, rank: np.ndarray | None = None) -> pd.DataFrame:
    """The greedy expected-value rule under the hard rules; `day` plus the decision columns (see `greedy_decided`)."""
    return greedy_decided(day, cfg, followup, model, span, rank).frame(day, cfg)


def greedy_decided(day: pd.DataFrame, cfg: Config, followup: int = GREEDY_FOLLOWUP, model: str = POLICY_MODEL,
                   span: int = SPAN_ROWS, rank: np.ndarray | None = None) -> Decided:
    """The greedy expected-value rule's choice for each row of `day` under the hard rules.

    followup: the follow-up choice every contact gets (0 none, j >= 1 `rules.followup_days`).

    Round r offers every unfunded eligible customer their best untried level with positive EV and runs the
    budget pass over those offers with what is left; a customer whose best offer did not fit falls back to a
    cheaper one in the next round (at most one round per level; none once the cheapest offer left cannot fit).
    Everything but the budget pass runs `span` rows at a time (`rules.spans`), the (n, 4) offer values made again
    for each round rather than held: at 10M rows whole-day passes over them ran at memory speed. rank: each row's
    place in the day's canonical order, which breaks ties in the budget pass and orders the sum of the spend (by
    position when None), so the plan does not depend on the order the rows come in.
    """
    n = len(day)
    holdout, reason, candidate = np.empty(n, dtype=bool), np.empty(n, dtype=np.uint8), np.empty(n, dtype=bool)
    open_ = np.empty((n, LEVELS), dtype=bool)  # the offers still on the table
    message_cost, level = np.empty(n), np.empty(n, dtype=np.int64)
    lvl, best, best_cost = np.empty(n, dtype=np.int64), np.empty(n), np.empty(n)  # each row's best open offer

    def values(part: pd.DataFrame, s: slice) -> tuple[np.ndarray, np.ndarray]:  # (rows, 4) EV and committed cost
        return (expected_values(part, cfg, accept_probs(part), message_cost[s]),
                offer_costs(part, cfg, message_cost[s]))

    def best_open(s: slice, ev: np.ndarray, cost: np.ndarray) -> None:
        rows, offers = np.arange(len(ev)), np.where(open_[s], ev, -np.inf)
        lvl[s] = offers.argmax(axis=1)  # ties go to the lower, cheaper level
        best[s], best_cost[s] = offers[rows, lvl[s]], cost[rows, lvl[s]]

    cheapest = np.inf  # the cheapest offer on the table: once the budget left is below it, nobody more is funded
    for s in spans(n, span):
        part = day.iloc[s]
        holdout[s] = holdout_mask(part["customer_id"], cfg.holdout_share)
        reason[s] = reason_codes(part, cfg, holdout[s])
        message_cost[s] = message_costs(part, cfg)
        ev, cost = values(part, s)
        open_[s] = (reason[s] == 0)[:, None] & (ev > 0)
        candidate[s], level[s] = open_[s].any(axis=1), ev.argmax(axis=1)
        cheapest = min(cheapest, float(np.min(cost, where=open_[s], initial=np.inf)))
        best_open(s, ev, cost)  # the first round's offers

    contact, spent = np.zeros(n, dtype=bool), 0.0
    for r in range(LEVELS):
        if cfg.daily_budget - spent < cheapest:
            break
        for s in spans(n, span) if r else ():
            best_open(s, *values(day.iloc[s], s))
        offered = ~contact & np.isfinite(best)
        if not offered.any():
            break
        take = np.zeros(n, dtype=bool)
        take[offered] = budget_pass(best[offered], best_cost[offered], cfg.daily_budget - spent,
                                    None if rank is None else rank[offered])
        contact |= take
        level[take] = lvl[take]
        took = np.flatnonzero(take)
        spent += float(best_cost[took if rank is None else took[np.argsort(rank[took])]].sum())
        offered = np.flatnonzero(offered)
        open_[offered, lvl[offered]] = False  # tried: funded, or did not fit
    reason = np.where(reason != 0, reason,
                      np.where(contact, REASON["contact"], np.where(candidate, REASON["budget"], REASON["low_value"])))

    delay, expected, took = np.full(n, followup), np.zeros(n), np.flatnonzero(contact)
    part, rows, at = day.iloc[took], np.arange(len(took)), level[took]
    accept = accept_probs(part)
    expected[took] = action_values(expected_values(part, cfg, accept, message_cost[took])[rows, at],
                                   accept[rows, at], followup_days(delay[took], cfg))
    return Decided(contact, level, delay, np.ones(n), holdout, reason, model, expected, message_cost)


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
