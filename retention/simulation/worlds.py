"""The simulator's truth, stated as treatment effects, in named worlds: what a message with offer k does to a
customer's churn against not contacting them.

Every world shares one structure (`Simulator._message`):
- acceptance a_k comes from the accept champion (UCI Bank Marketing mapped to our columns), at a neutral calendar
  day: the bank's month and weekday effects (57 % acceptance on a March day) are campaigns of 2008-10, not a
  property of our customers, so no world lets the date move acceptance;
- an accepted offer saves a would-be churner with probability `efficacy[k]` (the customer stays for the rest of the
  episode and is never contacted again); an accepted offer that does not save still costs its discount;
- a contacted customer who does not accept churns at a hazard raised by `backfire` (relative), and by
  `backfire_extra` more in a hidden segment of `backfire_share` of the customers (Ascarza 2018, "Retention Futility",
  JMR: some customers are pushed to leave by a contact; the plan's model does not know who);
- `history`: whether the customer's contact history moves acceptance as the champion learned it. The bank data's
  self-selection (customers whose last contact failed accept ~5x more) is not causal; `no_history` removes it;
- `fatigue`: acceptance multiplied by fatigue ** (messages in the fatigue window): repeated contact lowers it.

Sizes: with the defaults a 15 % offer to an average customer (30-day risk 0.27, acceptance ~0.35) lowers churn by
about 0.27 x (0.35 x 0.6 - 0.65 x 0.03) = 5 points; a check-in by well under 1. Published field experiments move
churn by a few points, not by the 27 the earlier "accepted means retained" simulator gave. The base world's
efficacy and backfire are the plan's own (Config.offer_efficacy, Config.contact_backfire); the other worlds depart
from what the plan believes, which is what a policy has to be robust to.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from retention.config import Config


@dataclass(frozen=True)
class World:
    """One simulated truth (see the module docstring)."""
    name: str
    efficacy: tuple[float, ...]
    """Per offer level, P(an accepted offer keeps a would-be churner)."""
    backfire: float
    """Relative rise of the churn hazard of a contacted customer who does not accept."""
    backfire_share: float = 0.0
    """Share of customers (by a stable hash of customer_id) in the segment a contact pushes to leave."""
    backfire_extra: float = 0.0
    """The segment's further relative rise of the hazard per unaccepted message."""
    history: bool = True
    """Contact history moves acceptance as the accept champion learned it (False: every customer as never contacted)."""
    fatigue: float = 1.0
    """Acceptance times fatigue ** (messages in the fatigue window)."""


def worlds(cfg: Config) -> dict[str, World]:
    """The named worlds; `base` is the plan's own model of the effects."""
    base = World("base", tuple(cfg.offer_efficacy), cfg.contact_backfire)
    return {
        "base": base,
        "no_history": dataclasses.replace(base, name="no_history", history=False),
        "fatigue": dataclasses.replace(base, name="fatigue", fatigue=0.6),
        "backfire": dataclasses.replace(base, name="backfire", backfire_share=0.25, backfire_extra=0.6),
    }


def world(cfg: Config, name: str | None = None) -> World:
    """The world called `name` (cfg.world by default); a ValueError lists the names."""
    name = name or cfg.world
    known = worlds(cfg)
    if name not in known:
        raise ValueError(f"world={name!r}: expected one of {sorted(known)}")
    return known[name]
