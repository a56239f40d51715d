"""Reference implementations the fast production code is checked against (test-only)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retention.deciding import rules
from retention.deciding.sampler import _cheapest, _contact_draws, _draw_delay, _fund, _open_costs


def budget_pass_reference(order_scores, costs, budget: float, rank=None) -> np.ndarray:
    """The budget pass as a plain loop (tests check `budget_pass` against it); ties by `rank`, else by position."""
    order = sorted(range(len(costs)), key=lambda i: (-float(order_scores[i]), i if rank is None else rank[i]))
    mask, spent = np.zeros(len(costs), dtype=bool), 0.0
    for i in order:
        if spent + float(costs[i]) <= budget:
            mask[i] = True
            spent += float(costs[i])
    return mask


@dataclass
class Sample:
    """A block's draws under the exact budget masks (see `sample_block`)."""
    contact: np.ndarray
    level: np.ndarray
    delay: np.ndarray
    before: np.ndarray
    """Budget left at each row's turn."""
    left: float
    """Budget left after the block."""
    wants: np.ndarray
    """The contact draw before any mask."""
    offer: np.ndarray
    """(n, 4) offer logits plus their Gumbel noise."""
    delay_logp: np.ndarray


def sample_block(logits, u, costs, eligible, budget: float) -> Sample:
    """Sample (contact, level, delay) for rows in order, each under the budget mask exact at its turn.

    u (n, NOISE) uniforms: column 0 draws the contact (logistic noise, the difference of two Gumbels), 1-4 the offer
    level (Gumbel-max), 5 the delay (inverse CDF; no rule constrains it). `decide_day` runs the same steps, with
    the noise transformed once per day and the budget-free parts done once after the last block.
    """
    lc, lo, ld = logits
    n = len(lc)
    wants = _contact_draws(lc, np.log(u[:, 0]), np.log1p(-u[:, 0]))
    offer = lo - np.log(-np.log(u[:, 1:1 + rules.LEVELS]))
    delay, delay_logp = _draw_delay(ld, u[:, 1 + rules.LEVELS])
    contact, level, before = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64), np.zeros(n)
    left = _fund(wants, offer, _open_costs(costs, eligible), _cheapest(costs, eligible), float(budget), contact,
                 level, before)
    return Sample(contact, level, delay, before, left, wants, offer, delay_logp)
