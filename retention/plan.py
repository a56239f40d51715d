"""The daily decision: hard contact rules, expected value of each offer, and one budget pass.

`decide` is the stage entry: with a trained policy it runs `retention.policy.rollout`; without one, `decide_greedy`:
each eligible customer gets the offer level with the highest expected value, and candidates are funded in order of
that value while the budget lasts.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from retention.config import Config

LEVELS = 4
"""Offer levels 0..3 (config offer_pcts gives their discounts)."""
POLICY_MODEL = "greedy_ev"
"""policy_model recorded for the greedy expected-value rule."""
BUDGET_TOL = 1e-6
"""Currency units a plan's spend may exceed the budget by: summing in another order moves the last bits."""

REASONS = ("", "suppressed", "holdout", "cooldown", "fatigue", "contact", "budget", "low_value", "wait")
"""decision_reason values; the decide code carries their index (uint8) and writes the strings once, into the frame."""
REASON = {r: np.uint8(i) for i, r in enumerate(REASONS)}
_REASON_STRINGS = pa.array(REASONS, pa.large_string())

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_FMIX = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


# stable hash


def stable_hash(strings) -> np.ndarray:
    """FNV-1a 64 over each string's UTF-8 bytes, then the MurmurHash3 finaliser: uint64, the same on every machine.

    Python's hash() is salted per process; this one is fixed, so the holdout and message wordings never drift.
    """
    data, starts, lengths = _utf8(strings)
    # longest first, so the strings that still have a byte at position j are a prefix: one numpy step per
    # position over those strings only (all n of them for ids of one width)
    order = np.argsort(lengths, kind="stable")[::-1]
    starts = starts[order]
    longer = np.searchsorted(-lengths[order], -np.arange(lengths.max(initial=0)))  # strings longer than j, per j
    h = np.full(len(order), _FNV_OFFSET)
    for j, k in enumerate(longer):
        live = h[:k]  # a view: the steps below work in place
        live ^= data[starts[:k] + j]
        live *= _FNV_PRIME
    # FNV's last bytes reach the high bits through one multiply only; the finaliser spreads every bit
    h ^= h >> np.uint64(33)
    h *= _FMIX[0]
    h ^= h >> np.uint64(33)
    h *= _FMIX[1]
    h ^= h >> np.uint64(33)
    out = np.empty_like(h)
    out[order] = h
    return out


def _utf8(strings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, start, length) of each string's UTF-8 encoding, read from an Arrow string array without copying."""
    arr = pa.array(pd.Series(strings, dtype="str"), pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise ValueError("stable_hash: a string is missing")
    _, offsets, data = arr.buffers()
    offsets = np.frombuffer(offsets, np.int64, len(arr) + 1, arr.offset * 8)  # int64: a large_string array
    return np.frombuffer(data, np.uint8), offsets[:-1], np.diff(offsets)


def unit_interval(h: np.ndarray) -> np.ndarray:
    """Map uint64 hashes to floats in [0, 1) using their top 53 bits."""
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53)


def holdout_mask(customer_ids, share: float) -> np.ndarray:
    """True for the customers in the never-contacted holdout: a fixed `share` of ids, the same every day."""
    return unit_interval(stable_hash(customer_ids)) < share


# hard rules


def reason_codes(day: pd.DataFrame, cfg: Config, holdout: np.ndarray) -> np.ndarray:
    """The first hard rule each row breaks as an index into REASONS (uint8), 0 ("") where none does."""
    rules = [
        day["suppressed"].to_numpy(dtype=bool),
        holdout,
        day["days_since_contact"].to_numpy() < cfg.cooldown_days,
        day["contacts_in_window"].to_numpy() >= cfg.fatigue_cap,  # today's contact would exceed the cap
    ]
    return np.select(rules, [REASON[r] for r in ("suppressed", "holdout", "cooldown", "fatigue")], np.uint8(0))


def reason_column(codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """decision_reason ("str" dtype) from REASONS indices: one Arrow take, no Python string per row."""
    return pd.array(pc.take(_REASON_STRINGS, pa.array(codes)), dtype="str")


def eligibility(day: pd.DataFrame, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """(eligible, reason): reason is suppressed | holdout | cooldown | fatigue, or "" for eligible rows."""
    reason = np.asarray(REASONS)[reason_codes(day, cfg, holdout_mask(day["customer_id"], cfg.holdout_share))]
    return reason == "", reason


# value and cost of each offer


def expected_values(day: pd.DataFrame, cfg: Config) -> np.ndarray:
    """(n, 4) expected net revenue retained by contacting with offer level k.

    EV_k = accept_prob_k * customer_value * (churn_risk - offer_pct_k) - channel_cost.
    An accepted offer keeps a customer who would have churned (probability churn_risk) for a year at the discounted
    price, value * (1 - pct), and gives the discount, value * pct, to one who would have stayed (1 - churn_risk):
    risk * (1 - pct) - (1 - risk) * pct = risk - pct. Every contact pays the channel cost, accepted or not.
    """
    value, risk = day["customer_value"].to_numpy(dtype=np.float64), day["churn_risk"].to_numpy(dtype=np.float64)
    return offer_values(accept_probs(day), value, risk, cfg)


def offer_values(accept: np.ndarray, value: np.ndarray, risk: np.ndarray, cfg: Config) -> np.ndarray:
    """`expected_values` from arrays: accept (n, 4), value and risk (n,)."""
    return accept * value[:, None] * (risk[:, None] - np.asarray(cfg.offer_pcts)) - cfg.channel_cost


def accept_probs(day: pd.DataFrame, rows=slice(None)) -> np.ndarray:
    """(n, 4) accept_prob_0..3 of `rows` (all by default) as float64, gathered a column at a time (row by row
    from the frame's column-major block touches four cache lines per row)."""
    return np.stack([day[f"accept_prob_{k}"].to_numpy(dtype=np.float64)[rows] for k in range(LEVELS)], axis=1)


def offer_costs(day: pd.DataFrame, cfg: Config) -> np.ndarray:
    """(n, 4) committed worst-case cost of offer level k: customer_value * offer_pct_k + channel_cost."""
    value = day["customer_value"].to_numpy(dtype=np.float64)[:, None]
    return value * np.asarray(cfg.offer_pcts) + cfg.channel_cost


# budget pass


def budget_pass(order_scores: np.ndarray, costs: np.ndarray, budget: float) -> np.ndarray:
    """One pass over candidates by score descending, taking each whose cost still fits: bool mask in input order.

    Equal to `_budget_pass_reference` bit for bit. Each round drops the candidates that can no longer fit (spend only
    grows), takes the prefix whose running sum fits, and skips the one that broke it; np.cumsum adds left to right
    from the spend so far, exactly like the loop. Ties keep input order.
    """
    costs = np.asarray(costs, dtype=np.float64)
    if np.any(~(costs >= 0)):
        raise ValueError("budget_pass: costs must be non-negative numbers")
    order = np.argsort(-np.asarray(order_scores, dtype=np.float64), kind="stable")
    c = costs[order]
    take = np.zeros(len(c), dtype=bool)
    todo, spent = np.arange(len(c)), 0.0
    while todo.size:
        todo = todo[spent + c[todo] <= budget]
        running = np.cumsum(np.concatenate(([spent], c[todo])))[1:]
        k = int(np.searchsorted(running, budget, side="right"))  # running[:k] <= budget
        take[todo[:k]] = True
        if k == todo.size:
            break
        spent = running[k - 1] if k else spent
        todo = todo[k + 1:]  # todo[k] fits alone but not after the prefix
    mask = np.zeros(len(c), dtype=bool)
    mask[order] = take
    return mask


def _budget_pass_reference(order_scores, costs, budget: float) -> np.ndarray:
    """The budget pass as a plain loop (tests check `budget_pass` against it)."""
    order = sorted(range(len(costs)), key=lambda i: -float(order_scores[i]))  # sorted() is stable
    mask, spent = np.zeros(len(costs), dtype=bool), 0.0
    for i in order:
        if spent + float(costs[i]) <= budget:
            mask[i] = True
            spent += float(costs[i])
    return mask


# decisions


def decide_greedy(day: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The greedy expected-value rule under the hard rules; `day` plus the decision columns.

    Round r offers every unfunded eligible customer their best untried level with positive EV and runs the
    budget pass over those offers with what is left; a customer whose best offer did not fit falls back to a
    cheaper one in the next round (at most one round per level).
    """
    n = len(day)
    rows = np.arange(n)
    holdout = holdout_mask(day["customer_id"], cfg.holdout_share)
    reason = reason_codes(day, cfg, holdout)
    ev, cost = expected_values(day, cfg), offer_costs(day, cfg)
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

    pcts = np.asarray(cfg.offer_pcts)[level]
    return day.assign(
        contact=contact,
        offer_level=pd.arrays.IntegerArray(level.astype(np.int64), ~contact),
        offer_pct=np.where(contact, pcts, np.nan),
        offer_cost=np.where(contact, cost[rows, level], 0.0),
        followup_days=pd.arrays.IntegerArray(np.full(n, cfg.cooldown_days, dtype=np.int64), ~contact),
        expected_value=np.where(contact, ev[rows, level], 0.0),
        propensity=np.ones(n),
        holdout=holdout,
        decision_reason=reason_column(reason),
        policy_model=POLICY_MODEL,
    )


def decide(day: pd.DataFrame, cfg: Config, policy=None, ds=None) -> pd.DataFrame:
    """The decide stage: the trained policy's rollout when one is passed (sampling seeded by ds), else greedy EV."""
    if policy is None:
        return decide_greedy(day, cfg)
    from retention.policy import Policy, rollout  # torch loads only when a policy is used

    if not isinstance(policy, Policy):
        raise ValueError(f"decide: policy must be a trained PPO retention.policy.Policy, not {type(policy).__name__}")
    if ds is None:
        raise ValueError("decide: a policy samples its decisions with a seed from ds; pass ds")
    return rollout(day, cfg, policy, ds)


def violations(plan: pd.DataFrame, cfg: Config) -> dict[str, int]:
    """Hard-rule breaks in a finished plan, by rule; every value is 0 in a valid plan.

    Recomputed from the inputs rather than trusting the plan's own bookkeeping: the committed cost from
    customer_value and offer_pct, the holdout from the hash, the rules from the history columns.
    """
    contact = plan["contact"].to_numpy(dtype=bool)
    pct = plan["offer_pct"].to_numpy(dtype=np.float64, na_value=np.nan)
    committed = plan["customer_value"].to_numpy(dtype=np.float64) * pct + cfg.channel_cost
    spend = float(committed[contact].sum())
    return {
        "budget": int(spend > cfg.daily_budget + BUDGET_TOL),
        "offer": int((contact & ~np.isin(pct, cfg.offer_pcts)).sum()),
        "holdout": int((contact & holdout_mask(plan["customer_id"], cfg.holdout_share)).sum()),
        "suppressed": int((contact & plan["suppressed"].to_numpy(dtype=bool)).sum()),
        "cooldown": int((contact & (plan["days_since_contact"].to_numpy() < cfg.cooldown_days)).sum()),
        "fatigue": int((contact & (plan["contacts_in_window"].to_numpy() >= cfg.fatigue_cap)).sum()),
    }
