"""The contact rules every decision obeys, and the formulas every decider shares: who may be contacted and why not,
what each offer costs and is expected to earn, the one budget pass, the plan's decision columns, and the check that a
finished plan broke no rule. Rules, greedy, policy rollout and simulator all call these; none restates them.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from retention.config import CHANNELS, Config
from retention.hashing import holdout_mask

LEVELS = 4
"""Offer levels 0..3 (config offer_pcts gives their discounts)."""
MESSAGES_PER_CONTACT = 2
"""Messages a contact may send: the first and one follow-up. The fatigue rule reserves room for both."""
BUDGET_TOL = 1e-6
"""Currency units a plan's spend may exceed the budget by: summing in another order moves the last bits."""
SPAN_ROWS = 32_768
"""Rows a whole-day step works on at a time (`spans`): a span's temporaries stay in the CPU's cache, where at 10M rows
each whole-day temporary costs a fresh mapping and a pass at memory speed (15-30x the time per row at 1M)."""

REASONS = ("", "suppressed", "holdout", "cooldown", "fatigue", "contact", "budget", "low_value", "wait")
"""decision_reason values; the decide code carries their index (uint8) and writes the strings once, into the frame."""
REASON = {r: np.uint8(i) for i, r in enumerate(REASONS)}
_REASON_STRINGS = pa.array(REASONS, pa.large_string())
_CHANNEL_STRINGS = pa.array(CHANNELS, pa.large_string())


def spans(n: int, size: int = SPAN_ROWS):
    """Slices that cover rows 0..n-1 in order, `size` rows each (the last may be shorter)."""
    return (slice(s, min(s + size, n)) for s in range(0, n, size))


# hard rules


def reason_codes(day: pd.DataFrame, cfg: Config, holdout: np.ndarray) -> np.ndarray:
    """The first hard rule each row breaks as an index into REASONS (uint8), 0 ("") where none does."""
    rules = [
        day["suppressed"].to_numpy(dtype=bool),
        holdout,
        cooldown_active(day["days_since_contact"].to_numpy(), cfg),
        at_fatigue_cap(day["contacts_in_window"].to_numpy(), cfg),
    ]
    return np.select(rules, [REASON[r] for r in ("suppressed", "holdout", "cooldown", "fatigue")], np.uint8(0))


def cooldown_active(days_since_contact, cfg: Config) -> np.ndarray:
    """True where the last contact is more recent than the cooldown allows."""
    return np.asarray(days_since_contact) < cfg.cooldown_days


def at_fatigue_cap(contacts_in_window, cfg: Config) -> np.ndarray:
    """True where a contact and its possible follow-up (two messages) would exceed the fatigue cap in the window.

    A contact starts a sequence that may hold a follow-up; it is made only when the whole sequence fits, so no
    customer ever receives more than the cap in any window, follow-ups counted, whatever the policy later chooses.
    """
    return np.asarray(contacts_in_window) + MESSAGES_PER_CONTACT > cfg.fatigue_cap


def contact_allowed(days_since_contact, contacts_in_window, cfg: Config) -> np.ndarray:
    """True where neither the cooldown nor the fatigue cap forbids a contact today."""
    return ~cooldown_active(days_since_contact, cfg) & ~at_fatigue_cap(contacts_in_window, cfg)


def followup_days(delay, cfg: Config) -> np.ndarray:
    """Days from a contact to its follow-up for delay choices 0..DELAYS-1: 0 is none, choice j >= 1 is
    cooldown_days + j - 1, so a follow-up never falls inside the cooldown of the message before it."""
    delay = np.asarray(delay, dtype=np.int64)
    return np.where(delay > 0, cfg.cooldown_days + delay - 1, 0)


def followup_choice(days, cfg: Config) -> np.ndarray:
    """The delay choice that `followup_days` maps to `days` (its inverse; 0 for none)."""
    days = np.asarray(days, dtype=np.int64)
    return np.where(days > 0, days - cfg.cooldown_days + 1, 0)


def reason_column(codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """decision_reason ("str" dtype) from REASONS indices: one Arrow take, no Python string per row."""
    return pd.array(pc.take(_REASON_STRINGS, pa.array(codes)), dtype="str")


def text_column(text: str, n: int) -> pd.api.extensions.ExtensionArray:
    """`text` n times ("str" dtype), its Arrow buffers written at once: pandas makes a scalar assigned to 10M rows one
    object at a time (a second)."""
    raw = np.frombuffer(text.encode(), dtype=np.uint8)
    offsets = np.arange(n + 1, dtype=np.int64) * len(raw)
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.tile(raw, n)))
    return pd.array(arr, dtype="str")


def eligibility(day: pd.DataFrame, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """(eligible, reason): reason is suppressed | holdout | cooldown | fatigue, or "" for eligible rows."""
    reason = np.asarray(REASONS)[reason_codes(day, cfg, holdout_mask(day["customer_id"], cfg.holdout_share))]
    return reason == "", reason


# value and cost of each offer


def expected_values(day: pd.DataFrame, cfg: Config, accept: np.ndarray | None = None,
                    message_cost: np.ndarray | None = None) -> np.ndarray:
    """(n, 4) expected incremental net revenue of one message with offer level k to each row of `day`; with
    cfg.use_uplift the churn each offer prevents is the uplift model's (uplift_0..3), not the plan's own model.
    accept, message_cost: `accept_probs(day)` and `message_costs(day, cfg)` when the caller has them."""
    value, risk = day["customer_value"].to_numpy(dtype=np.float64), day["churn_risk"].to_numpy(dtype=np.float64)
    return offer_values(accept_probs(day) if accept is None else accept, value, risk,
                        message_costs(day, cfg) if message_cost is None else message_cost, cfg,
                        uplift_lift(day) if cfg.use_uplift else None)


def uplift_lift(day: pd.DataFrame) -> np.ndarray:
    """(n, 4) uplift_0..3 of `day`: the uplift model's churn prevented per offer level; a ValueError names a row
    without them (use_uplift is on, so the score stage must have written them)."""
    missing = [f"uplift_{k}" for k in range(LEVELS) if f"uplift_{k}" not in day.columns]
    if missing:
        raise ValueError(f"use_uplift is on but the scored day has no {missing[0]}: score with the uplift champion")
    lift = np.stack([day[f"uplift_{k}"].to_numpy(dtype=np.float64, na_value=np.nan) for k in range(LEVELS)], axis=1)
    bad = ~np.isfinite(lift).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"customer_id={day['customer_id'].iloc[row]!r}: field uplift_* is null while use_uplift is on")
    return lift


def offer_values(accept: np.ndarray, value: np.ndarray, risk: np.ndarray, message_cost: np.ndarray,
                 cfg: Config, lift: np.ndarray | None = None) -> np.ndarray:
    """(n, 4) expected incremental net revenue of one message with offer k: the churn it prevents against no
    contact, times the customer's value, less the expected discount and the message.

    EV_k = value * (risk * (a_k * e_k - (1 - a_k) * b) - a_k * pct_k) - message_cost, with a_k the acceptance,
    e_k the offer's efficacy (share of would-be churners who accept and then stay) and b the backfire (relative rise
    in risk of a contacted customer who does not accept). A check-in (pct 0, small e_0) is worth sending only to
    customers likely to respond; a discount only where the risk it removes outweighs what it gives away. `lift`:
    the (n, 4) churn prevented, when a learned effect (the uplift model) replaces risk * (a e - (1 - a) b).
    """
    if lift is None:
        lift = churn_lift(risk[:, None], accept, np.asarray(cfg.offer_efficacy), cfg.contact_backfire)
    return value[:, None] * (lift - accept * np.asarray(cfg.offer_pcts)) - np.asarray(message_cost)[:, None]


def churn_lift(risk, accept, efficacy, backfire):
    """The churn a message prevents against no contact: risk * (accept * efficacy - (1 - accept) * backfire).

    The plan's model (Config.offer_efficacy, contact_backfire) and the simulator's worlds (their own efficacy and
    per-customer backfire) both use this one formula."""
    return risk * (accept * efficacy - (1.0 - accept) * backfire)


def action_values(ev: np.ndarray, accept: np.ndarray, followup: np.ndarray) -> np.ndarray:
    """Expected incremental net revenue of a whole action: the first message's `ev`, times `tries`."""
    return ev * tries(accept, followup)


def tries(accept: np.ndarray, followup: np.ndarray) -> np.ndarray:
    """Expected offers an action makes: one, plus with a follow-up one more to the 1 - accept who did not accept."""
    return np.where(np.asarray(followup) > 0, 2.0 - accept, 1.0)


def campaign_figures(plan: pd.DataFrame, cfg: Config) -> dict[str, float]:
    """What a finished plan is expected to achieve, in the plan's own model: messages (contacts and follow-ups),
    the contact rate, incremental customers kept (churn prevented against no contact), the expected cost (discounts
    to acceptors and messages), the cost per incremental customer and the ROI (expected net revenue / cost)."""
    took = plan[plan["contact"].to_numpy(dtype=bool)]
    rows, level = np.arange(len(took)), took["offer_level"].to_numpy(dtype=np.int64)
    accept = accept_probs(took)[rows, level]
    follow = took["followup_days"].to_numpy(dtype=np.int64) > 0
    offers = tries(accept, follow)
    lift = churn_lift(took["churn_risk"].to_numpy(np.float64), accept, np.asarray(cfg.offer_efficacy)[level],
                      cfg.contact_backfire)
    value = took["customer_value"].to_numpy(np.float64)
    cost = accept * offers * value * np.asarray(cfg.offer_pcts)[level] + message_costs(took, cfg) * (1 + follow)
    customers, spent = float((lift * offers).sum()), float(cost.sum())
    net = float(took["expected_value"].sum())
    return {"messages": int(len(took) + follow.sum()), "followups": int(follow.sum()),
            "contact_rate": round(len(took) / max(len(plan), 1), 4),
            "incremental_customers": round(customers, 2), "expected_cost": round(spent, 2),
            "cost_per_incremental_customer": round(spent / customers, 2) if customers > 0 else None,
            "roi": round(net / spent, 3) if spent > 0 else None}


def accept_probs(day: pd.DataFrame, rows=slice(None)) -> np.ndarray:
    """(n, 4) accept_prob_0..3 of `rows` (all by default) as float64, gathered a column at a time (row by row
    from the frame's column-major block touches four cache lines per row)."""
    return np.stack([day[f"accept_prob_{k}"].to_numpy(dtype=np.float64)[rows] for k in range(LEVELS)], axis=1)


def message_costs(day: pd.DataFrame, cfg: Config, rows=slice(None)) -> np.ndarray:
    """(n,) cost of one message to each row's channel, for `rows` of `day` (all by default)."""
    return channel_message_costs(day["channel"], cfg, day["customer_id"])[rows]


def channel_message_costs(channels, cfg: Config, customer_ids=None) -> np.ndarray:
    """(n,) cfg.channel_costs of each channel plus cfg.channel_cost; a ValueError names a row of unknown channel.

    One Arrow lookup over the column: a per-row categorical costs 20x more at 1M rows, and every decider calls this.
    """
    codes = pc.index_in(_arrow_strings(channels), value_set=_CHANNEL_STRINGS).fill_null(-1).to_numpy()
    if np.any(codes < 0):
        bad = int(np.flatnonzero(codes < 0)[0])
        who = f"customer_id={pd.Series(customer_ids).iloc[bad]!r}: " if customer_ids is not None else ""
        raise ValueError(f"{who}field channel={pd.Series(channels).iloc[bad]!r} not in {CHANNELS}")
    return np.asarray(cfg.channel_costs, dtype=np.float64)[codes] + cfg.channel_cost


def _arrow_strings(values) -> pa.Array:
    """`values` as one Arrow string array (without copying a column that already is one)."""
    arr = pa.array(pd.Series(values, dtype="str"), pa.large_string())
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def offer_costs(day: pd.DataFrame, cfg: Config, message_cost: np.ndarray | None = None) -> np.ndarray:
    """(n, 4) committed worst-case cost of each offer level for the rows of `day` (see `committed_costs`);
    message_cost: `message_costs(day, cfg)` when the caller has it."""
    return committed_costs(day["customer_value"].to_numpy(dtype=np.float64),
                           message_costs(day, cfg) if message_cost is None else message_cost, cfg)


def committed_costs(value: np.ndarray, message_cost: np.ndarray, cfg: Config) -> np.ndarray:
    """(n, 4) what offer level k commits before its follow-up is chosen: the whole discount and both messages."""
    return offer_cost(value[:, None], np.asarray(cfg.offer_pcts), np.asarray(message_cost)[:, None] * MESSAGES_PER_CONTACT)


def offer_cost(value, pct, messages_cost):
    """The committed worst case of one offer: the whole discount, customer_value * pct, plus its messages.

    Charged in full whether or not the customer accepts, so the sum over a plan bounds what it can cost.
    """
    return value * pct + messages_cost


def worth_making(costs: np.ndarray, ev: np.ndarray) -> np.ndarray:
    """`costs` with the offers whose expected incremental value does not beat their cost made unaffordable (inf):
    no contact, a 0 % check-in included, is made unless it is expected to earn more than it costs."""
    return np.where(ev > 0, costs, np.inf)


# budget pass


BUDGET_HEAD = 65_536
"""Candidates the budget pass sorts first (then 8x as many of the rest, and so on while anyone left still fits)."""


def budget_pass(order_scores: np.ndarray, costs: np.ndarray, budget: float, rank: np.ndarray | None = None
                ) -> np.ndarray:
    """One pass over candidates by score descending, taking each whose cost still fits: bool mask in input order.
    Ties go by `rank` (each candidate's place in the day's canonical order), by input order when None.

    Equal to the plain loop in tests (`budget_pass_reference`) bit for bit. The order is sorted a segment at a time:
    the best BUDGET_HEAD candidates by score (with every tie of the last) are sorted and passed first, then 8x as many
    of the rest, and so on until nobody left fits; a day's budget is mostly spent on the first segment, so the pass
    sorts thousands of candidates, not the millions offered. Candidates that cost more than the budget never enter.
    """
    costs = np.asarray(costs, dtype=np.float64)
    if np.any(~(costs >= 0)):
        raise ValueError("budget_pass: costs must be non-negative numbers")
    key = -np.asarray(order_scores, dtype=np.float64)
    mask = np.zeros(len(costs), dtype=bool)
    rest, spent, head = np.arange(len(costs)), 0.0, BUDGET_HEAD
    while rest.size:
        rest = rest[spent + costs[rest] <= budget]  # the others no longer fit: spend only grows
        k = key[rest]
        cut = np.partition(k, head)[head] if head < rest.size else np.nan  # NaN keys sort last, as in np.sort
        first = k <= cut if not np.isnan(cut) else np.ones(rest.size, dtype=bool)  # all of them precede the rest
        part = rest[first]
        order = part[np.argsort(key[part], kind="stable") if rank is None else stable_argsort(key[part], rank[part])]
        took, spent = _take_in_order(costs[order], budget, spent)
        mask[order[took]] = True
        rest, head = rest[~first], head * 8
    return mask


def _take_in_order(c: np.ndarray, budget: float, spent: float) -> tuple[np.ndarray, float]:
    """The budget pass over costs `c` already in order, from `spent`: (taken mask, spend after).

    Each round drops the candidates that can no longer fit (spend only grows), takes the prefix whose running sum
    fits, and skips the one that broke it; np.cumsum adds left to right from the spend so far, exactly like a loop.
    """
    take, todo = np.zeros(len(c), dtype=bool), np.arange(len(c))
    while todo.size:
        todo = todo[spent + c[todo] <= budget]
        running = np.cumsum(np.concatenate(([spent], c[todo])))[1:]
        k = int(np.searchsorted(running, budget, side="right"))  # running[:k] <= budget
        take[todo[:k]] = True
        spent = running[k - 1] if k else spent
        todo = todo[k + 1:]  # todo[k] fits alone but not after the prefix
    return take, float(spent)


class IdOrder:
    """Rows' places in customer_id order, as the deciders' `rank`, worked out only for the rows a tie-break reaches:
    sorting a day's 10M ids costs a second, while the greedy rule's budget pass meets ties among a few hundred
    thousand. `order[rows]` is the order of those rows among themselves (all that a tie-break compares);
    np.asarray(order) sorts their ids."""

    def __init__(self, ids):
        self.ids = ids if isinstance(ids, pa.Array) else _arrow_strings(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, rows) -> IdOrder:
        rows = np.asarray(rows)
        return IdOrder(self.ids.take(pa.array(np.flatnonzero(rows) if rows.dtype == bool else rows)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rank = np.empty(len(self.ids), dtype=np.int64)
        rank[pc.sort_indices(self.ids).to_numpy()] = np.arange(len(self.ids))  # a stable sort
        return rank if dtype is None else rank.astype(dtype, copy=False)


def stable_argsort(key: np.ndarray, rank: np.ndarray | None = None) -> np.ndarray:
    """The order that sorts `key` ascending, equal keys by `rank` (by position when None: then it is
    np.argsort(key, kind="stable"), in about a third of the time at 1M rows).

    numpy's default sort (AVX-512 where the CPU has it) puts equal keys in any order; each run of equal keys
    (NaNs, which sort last, count as equal) then gets its rows sorted back by rank (or position).
    """
    order = np.argsort(key)
    k = key[order]
    nan = np.isnan(k)
    tie = (k[1:] == k[:-1]) | (nan[1:] & nan[:-1])  # sorted position i + 1 ties with i
    if tie.any():
        run = np.cumsum(np.concatenate(([True], ~tie)))
        tied = np.flatnonzero(np.concatenate(([False], tie)) | np.concatenate((tie, [False])))
        by = order[tied] if rank is None else np.asarray(rank, dtype=np.int64)[order[tied]]
        # one int64 key (run, by), 7x faster than np.lexsort at 5M ties: both are below 2^31 for any day we hold
        order[tied] = order[tied][np.argsort(run[tied] * (int(by.max()) + 1) + by, kind="stable")]
    return order


# the plan's columns and its check


def violations(plan: pd.DataFrame, cfg: Config) -> dict[str, int]:
    """Hard-rule breaks in a finished plan, by rule; every value is 0 in a valid plan.

    Recomputed from the inputs rather than trusting the plan's own bookkeeping: the committed cost from
    customer_value and offer_pct, the holdout from the hash, the rules from the history columns.
    """
    contact = plan["contact"].to_numpy(dtype=bool)
    pct = plan["offer_pct"].to_numpy(dtype=np.float64, na_value=np.nan)
    messages = 1 + (plan["followup_days"].fillna(0).to_numpy(dtype=np.int64) > 0)
    committed = offer_cost(plan["customer_value"].to_numpy(dtype=np.float64), pct, message_costs(plan, cfg) * messages)
    spend = float(committed[contact].sum())
    return {
        "budget": int(spend > cfg.daily_budget + BUDGET_TOL),
        "offer": int((contact & ~np.isin(pct, cfg.offer_pcts)).sum()),
        "holdout": int((contact & holdout_mask(plan["customer_id"], cfg.holdout_share)).sum()),
        "suppressed": int((contact & plan["suppressed"].to_numpy(dtype=bool)).sum()),
        "cooldown": int((contact & cooldown_active(plan["days_since_contact"].to_numpy(), cfg)).sum()),
        "fatigue": int((contact & at_fatigue_cap(plan["contacts_in_window"].to_numpy(), cfg)).sum()),
    }


def plan_frame(day, cfg: Config, contact, level, delay, propensity, holdout, reason, model: str,
               expected: np.ndarray | None = None, message_cost: np.ndarray | None = None) -> pd.DataFrame:
    """`day` plus the ten decision columns of the contact plan; every decider writes its plan through this.

    delay: the follow-up choice 0..DELAYS-1 (see `followup_days`); reason: indices into REASONS; expected: each
    row's expected value at `level` (read where contacted only; `expected_values` by default); message_cost:
    `message_costs(day, cfg)` when the caller has it. Offer, cost, follow-up and value are worked out for the
    contacted rows only: the rest get 0 / null.
    """
    n = len(day)
    contact, level = np.asarray(contact, dtype=bool), np.asarray(level, dtype=np.int64)
    delay = np.broadcast_to(np.asarray(delay, dtype=np.int64), (n,))
    message_cost = message_costs(day, cfg) if message_cost is None else np.asarray(message_cost)  # checks channels
    took = np.flatnonzero(contact)
    at, pct, days = level[took], np.asarray(cfg.offer_pcts)[level[took]], followup_days(delay[took], cfg)
    if expected is None:
        part, rows = day.iloc[took], np.arange(len(took))
        expected = action_values(expected_values(part, cfg, message_cost=message_cost[took])[rows, at],
                                 accept_probs(part)[rows, at], days)
    else:
        expected = np.asarray(expected)[took]
    offer_pct, cost, value, all_days = np.full(n, np.nan), np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64)
    offer_pct[took], all_days[took], value[took] = pct, days, expected
    cost[took] = offer_cost(day["customer_value"].to_numpy(dtype=np.float64)[took], pct,
                            message_cost[took] * (1 + (days > 0)))

    def ours(values: np.ndarray) -> pd.Series:  # made here: the frame may hold it without a copy
        return pd.Series(values, index=day.index, copy=False)

    return day.assign(
        contact=contact,
        offer_level=pd.arrays.IntegerArray(level, ~contact),
        offer_pct=ours(offer_pct),
        offer_cost=ours(cost),
        followup_days=pd.arrays.IntegerArray(all_days, ~contact),
        expected_value=ours(value),
        propensity=np.asarray(propensity, dtype=np.float64),
        holdout=holdout,
        decision_reason=reason_column(reason),
        policy_model=text_column(model, n),
    )


@dataclass(frozen=True)
class Decided:
    """A decider's choices for each row of a day, in the day's row order: what `plan_frame` makes the plan's decision
    columns of. `decided[a:b]` holds those of rows a..b-1, so a day decided whole can be written chunk by chunk."""
    contact: np.ndarray
    level: np.ndarray
    delay: np.ndarray
    propensity: np.ndarray
    holdout: np.ndarray
    reason: np.ndarray
    model: str
    expected: np.ndarray | None = None
    message_cost: np.ndarray | None = None

    def __getitem__(self, rows: slice) -> Decided:
        return Decided(*(v if v is None or isinstance(v, str) else v[rows]
                         for v in (getattr(self, f.name) for f in fields(self))))

    def frame(self, day: pd.DataFrame, cfg: Config) -> pd.DataFrame:
        """`day` (these rows) plus the plan's decision columns (`plan_frame`)."""
        return plan_frame(day, cfg, self.contact, self.level, self.delay, self.propensity, self.holdout, self.reason,
                          self.model, self.expected, self.message_cost)
