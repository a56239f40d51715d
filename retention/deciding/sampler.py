"""The hard rules as action masks, and the sampler the daily rollout, training and evaluation share.

The state layout (OBS), `observe` (a day's candidates as states), `decide_day` (sample contact, offer level and
follow-up delay for candidates in order, `block` rows per forward pass, each under the exact budget mask at its
turn, with the log-probability of the action taken) and `candidate_order` (the queue: revenue at stake first).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from retention.deciding import rules
from retention.config import Config

DELAYS = 8
"""Follow-up delays 0..7 days (0: none)."""
OBS = ("churn_risk", "accept_prob_0", "accept_prob_1", "accept_prob_2", "accept_prob_3", "budget_remaining",
       "days_since_contact", "cooldown_active", "fatigue_count")
"""The 9 state values, in order: budget as a share of the day's budget, days since contact / 30 (never: 1),
fatigue count / fatigue cap, both clipped to 1."""
BUDGET = OBS.index("budget_remaining")
DAYS_SCALE = 30
NOISE = 1 + rules.LEVELS + 1
"""Uniforms per decision: one for the contact, one per offer level, one for the delay."""
SPAN_ROWS = rules.SPAN_ROWS
"""Candidates whose noise, logits and post-draw steps `decide_day` holds at a time (a few MB: in the CPU's cache)."""

# the hard rules as action masks, and the sampler the rollout and training share


def observe(risk, accept, days_since, contacts_in_window, cfg: Config) -> np.ndarray:
    """(n, 9) float32 state in OBS order; the budget column is left 0 for `decide_day` to fill."""
    days_since = np.asarray(days_since)
    obs = np.zeros((len(days_since), len(OBS)), dtype=np.float32)
    obs[:, 0], obs[:, 1:5] = risk, accept
    obs[:, 6] = np.minimum(days_since, DAYS_SCALE) / DAYS_SCALE
    obs[:, 7] = rules.cooldown_active(days_since, cfg)
    obs[:, 8] = np.minimum(contacts_in_window, cfg.fatigue_cap) / cfg.fatigue_cap
    return obs


@dataclass
class Decisions:
    """Sampled decisions for candidates in processing order, with what PPO and the logs need."""
    contact: np.ndarray
    level: np.ndarray
    """Offer level, 0 where not contacted."""
    delay: np.ndarray
    logp: np.ndarray
    """Log-probability of the joint action taken, under the masks it was taken with."""
    contact_ok: np.ndarray
    """(n, 2) legal contact choices; contact is illegal when ineligible or no offer fits."""
    affordable: np.ndarray
    """(n, 4) offers whose cost fits the budget left at the row's turn."""
    proposal: np.ndarray | None
    """(n, 3) the same draw unmasked (contact, level, delay), when asked for: what the policy would do unenforced."""
    obs: np.ndarray
    spent: float
    before: np.ndarray
    """The budget left at each row's turn: decided alone with this much left (`decide_day(left=...)`, block 1), a
    row gets the same action."""


def _open_costs(costs, eligible) -> np.ndarray:
    """The offer costs, NaN where the row may not be contacted (NaN <= budget is False: never affordable)."""
    return np.where(eligible[:, None], costs, np.nan)


def _cheapest(costs, eligible) -> np.ndarray:
    """The cheapest offer cost per row, NaN where the row may not be contacted."""
    # column by column: numpy reduces along a short axis many times slower; fmin skips NaN
    return np.where(eligible, functools.reduce(np.fmin, costs.T), np.nan)


def _contact_draws(lc, log_u, log_1mu) -> np.ndarray:
    """The contact draw before any mask: logit margin plus logistic noise log(u) - log(1 - u) above 0."""
    return lc[:, 1] - lc[:, 0] + log_u - log_1mu > 0


def _draw_delay(ld, u) -> tuple[np.ndarray, np.ndarray]:
    """(delay, its log-probability) drawn from softmax(ld) by inverse CDF at u (fastest with ld in Fortran order)."""
    top = ld.max(axis=1, keepdims=True)
    cdf = ld - top
    np.exp(cdf, out=cdf)
    for k in range(1, DELAYS):  # np.cumsum(cdf, axis=1), a column at a time
        cdf[:, k] += cdf[:, k - 1]
    delay = np.minimum((cdf < u[:, None] * cdf[:, -1:]).sum(axis=1), DELAYS - 1)
    return delay, ld[np.arange(len(ld)), delay] - top[:, 0] - np.log(cdf[:, -1])


def _fund(wants, offer, open_costs, cheapest, left: float, contact, level, before) -> float:
    """The budget-sequential part of the draw: fills contact, level and before in place, returns the budget left.

    open_costs, cheapest: `_open_costs`, `_cheapest`. Each pass draws every remaining row under the mask of the budget
    left at its start and keeps the prefix whose running cost fits; the first row that does not fit is drawn again
    under its exact mask (it then fits) by the next pass. A Gumbel-max draw is still the argmax after dropping
    options it did not pick, so every kept row's action is exactly its draw under its own mask.
    """
    n, p = len(wants), 0
    if not (cheapest <= left).any():  # no offer fits any row (the usual block once the day's budget is spent)
        contact[:], level[:], before[:] = False, 0, left
        return left
    while p < n:
        lvl = np.where(open_costs[p:] <= left, offer[p:], -np.inf).argmax(axis=1)
        c = (cheapest[p:] <= left) & wants[p:]  # some offer fits, and the draw says contact
        cost = np.where(c, open_costs[p:][np.arange(n - p), lvl], 0.0)
        running = np.cumsum(cost)
        over = np.flatnonzero(running > left)
        q = int(over[0]) if over.size else n - p  # rows p .. p+q-1 fit
        contact[p:p + q], level[p:p + q], before[p:p + q] = c[:q], lvl[:q], left - (running[:q] - cost[:q])
        left -= float(running[q - 1]) if q else 0.0
        p += q
    return left


def action_log_prob(lc, lo, offer_ok, can, contact, level, delay_logp) -> np.ndarray:
    """Log-probability of each joint action under the masks it was drawn with: contact, offer among legal, delay.

    offer_ok: the legal offers of the contacted rows only; can: some offer was legal (so not contacting was a choice).
    """
    margin = lc[:, 1] - lc[:, 0]
    logp = np.zeros(len(lc))
    rows = np.flatnonzero(contact)
    logp[rows] = -np.logaddexp(0.0, -margin[rows])
    passed = can & ~contact
    logp[passed] = -np.logaddexp(0.0, margin[passed])
    # log-softmax of the legal offers, in place; max and sum column by column (numpy's row sums add left to right too)
    z = lo[rows]
    np.copyto(z, -np.inf, where=~offer_ok)  # a contact had at least one legal offer
    z -= functools.reduce(np.maximum, z.T)[:, None]
    taken = z[np.arange(len(z)), level[rows]]
    np.exp(z, out=z)
    logp[rows] += taken - np.log(functools.reduce(np.add, z.T)) + delay_logp[rows]
    return logp


def decide_day(obs: np.ndarray, costs: np.ndarray, eligible: np.ndarray, budget: float, u: np.ndarray,
               logits_fn: Callable, block: int, propose: bool = False, left: float | None = None,
               copy_obs: bool = True, stop_when_spent: bool = False) -> Decisions:
    """Decide a day's candidates in order, `block` rows per forward pass, the budget state refreshed per block.

    obs (n, 9) in processing order (budget column filled here); costs (n, 4) committed cost per level;
    eligible (n,) False where the contact rules forbid a contact; u (n, NOISE) uniforms in (0, 1), or anything
    sliced by rows to them (`policy.SpanNoise`);
    logits_fn(obs) -> (contact (b, 2), offer (b, 4), delay (b, 8)) logits; propose: also keep the unmasked draws;
    left: the budget left when the first row's turn comes (the whole budget by default); copy_obs=False: fill the
    budget column of the caller's `obs` in place (it made obs for this call alone); stop_when_spent (not with
    propose): from the first block where no offer left in the queue fits the budget left, no forward pass and no
    draw: those rows are not contacted, as their draws would have had them, with log-probability 0 and delay 0 (a
    delay drawn for a row not contacted is never used by a plan).
    Only the forward pass and the budget-sequential draw run per block; the rest runs once per span of blocks
    (SPAN_ROWS), whose arrays stay in the CPU's cache: at 10M candidates, whole-day passes over the logits ran at
    memory speed and cost more than the draw itself. Every step is row by row, so the span changes no bit.
    """
    n, left = len(obs), float(budget if left is None else left)
    start = left
    obs, cheapest = obs.copy() if copy_obs else obs, _cheapest(costs, eligible)
    contact, level, before = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64), np.zeros(n)
    delay, logp, can = np.zeros(n, dtype=np.int64), np.zeros(n), np.zeros(n, dtype=bool)
    affordable = np.zeros(costs.shape, dtype=bool)
    proposal = np.zeros((n, 3), dtype=np.int64) if propose else None
    # the cheapest offer from each row to the end of the queue (fmin skips the NaN of rows that may not be contacted)
    tail = np.fmin.accumulate(cheapest[::-1])[::-1] if stop_when_spent and not propose else None
    span, end = block * max(1, SPAN_ROWS // block), n  # whole blocks: the budget state refreshes where it always did
    for s0 in range(0, n, span):
        sp = slice(s0, min(s0 + span, n))
        m, us = sp.stop - s0, u[sp]
        log_u, log_1mu, gumbel = np.log(us[:, 0]), np.log1p(-us[:, 0]), np.log(-np.log(us[:, 1:1 + rules.LEVELS]))
        # delay logits by column (Fortran order): its softmax reduces along the short axis, fast only this way round
        lc, lo, ld = np.empty((m, 2)), np.empty((m, rules.LEVELS)), np.empty((m, DELAYS), order="F")
        wants = np.empty(m, dtype=bool)
        c, lvl, bef, op, ok = contact[sp], level[sp], before[sp], obs[sp], eligible[sp]  # views: filled in place
        cs, ch = costs[sp], cheapest[sp]
        for s in range(0, m, block):
            if tail is not None and not tail[s0 + s] <= left:  # nobody from this block on can be funded
                end = s0 + s
                break
            b = slice(s, s + block)
            op[b, BUDGET] = left / budget if budget > 0 else 0.0
            lc[b], lo[b], ld[b] = logits_fn(op[b])
            wants[b] = _contact_draws(lc[b], log_u[b], log_1mu[b])
            block_left = _fund(wants[b], lo[b] - gumbel[b], _open_costs(cs[b], ok[b]), ch[b], left, c[b], lvl[b],
                               bef[b])
            left -= left - block_left  # the block's spend, subtracted as such: the same float steps as ever
        if end < sp.stop:  # the span's steps below for the blocks drawn
            m = end - s0
            sp, us, lc, lo, ld, wants = slice(s0, end), us[:m], lc[:m], lo[:m], ld[:m], wants[:m]
            c, lvl, bef, ok, cs, ch, gumbel = c[:m], lvl[:m], bef[:m], ok[:m], cs[:m], ch[:m], gumbel[:m]
        delay[sp], delay_logp = _draw_delay(ld, us[:, 1 + rules.LEVELS])
        fits = affordable[sp] = cs <= bef[:, None]
        can[sp] = ch <= bef  # = (eligible & affordable).any(axis=1)
        logp[sp] = action_log_prob(lc, lo, ok[c, None] & fits[c], can[sp], c, lvl, delay_logp)
        if propose:
            proposal[sp] = np.stack([wants, (lo - gumbel).argmax(axis=1), delay[sp]], axis=1)
        if end < n:
            break
    if end < n:  # what every draw from here on would give: not contacted, nothing affordable among the eligible
        obs[end:, BUDGET] = left / budget if budget > 0 else 0.0
        before[end:] = left
        affordable[end:] = costs[end:] <= left
    return Decisions(contact, np.where(contact, level, 0), delay, logp, np.stack([np.ones(n, dtype=bool), can], axis=1),
                     affordable, proposal, obs, float(start - left), before)


def delay_log_prob(ld, delay) -> np.ndarray:
    """log softmax(ld)[delay] per row: the follow-up head has no mask."""
    z = ld - ld.max(axis=1, keepdims=True)
    return z[np.arange(len(z)), delay] - np.log(np.exp(z).sum(axis=1))


def candidate_order(risk: np.ndarray, value: np.ndarray, rank: np.ndarray | None = None) -> np.ndarray:
    """Processing order of a day's candidates: revenue at stake (churn_risk x customer_value) first, ties by `rank`
    (each candidate's place in the day's canonical order; by position when None).

    The customers with the most to lose see the fullest budget, as in the greedy rule's pass; the order does not
    depend on the policy, so a rollout of any policy spends the budget on the same queue.
    """
    return rules.stable_argsort(-(np.asarray(risk) * np.asarray(value)), rank)
