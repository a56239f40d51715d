"""Policies in the simulator: every decider (learned, random, rules) on the same seeded episodes, with the rule
breaks each would commit unenforced, summed into one comparable table."""
from __future__ import annotations

import datetime as dt
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

from retention.deciding import rules
from retention.deciding.greedy import decide_greedy, no_contact, top_risk
from retention.deciding.policy import Policy, Rolled, roll, rollout_frame
from retention.deciding.sampler import DELAYS
from retention.simulation.simulator import Simulator


def _proposal_breaks(r: Rolled) -> int:
    """Decisions whose unmasked draw breaks a rule: a contact in cooldown or at the cap, an offer over the budget."""
    d = r.decisions
    contact, level = d.proposal[:, 0] == 1, d.proposal[:, 1]
    over = ~d.affordable[np.arange(len(level)), level]
    return int((contact & ((r.code[r.queue] != 0) | over)).sum())


def policy_decider(policy: Policy) -> Callable:
    """(day, cfg, ds) -> (plan, proposal breaks) for a learned or the random policy."""
    def decide(day, cfg, ds):
        r = roll(day, cfg, policy, ds, propose=True)
        return rollout_frame(day, cfg, policy, r), _proposal_breaks(r)
    return decide


def _rules(planned: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(candidate, eligible) from a plan's decision_reason: candidates are neither suppressed nor in the holdout."""
    reason = planned["decision_reason"].to_numpy()
    candidate = (reason != "suppressed") & (reason != "holdout")
    return candidate, candidate & (reason != "cooldown") & (reason != "fatigue")


def greedy_decider(day, cfg, ds, followup: int = 0):
    """The greedy EV plan (no follow-up by default); its proposal is every positive-EV candidate at its best level,
    rules unchecked."""
    planned = decide_greedy(day, cfg, followup)
    candidate, eligible = _rules(planned)
    ev, cost = rules.expected_values(day, cfg), rules.offer_costs(day, cfg)
    best = ev.argmax(axis=1)
    rows = np.flatnonzero(candidate & (ev.max(axis=1) > 0))
    rows = rows[np.argsort(-ev[rows, best[rows]], kind="stable")]
    over = np.cumsum(cost[rows, best[rows]]) > cfg.daily_budget + rules.BUDGET_TOL
    return planned, int((over | ~eligible[rows]).sum())


def greedy_followup_decider(followup: int) -> Callable:
    """Greedy EV where every contact gets the same follow-up choice (rules.followup_days)."""
    def decide(day, cfg, ds):
        return greedy_decider(day, cfg, ds, followup)
    return decide


def top_risk_decider(day, cfg, ds):
    """Top-risk plan; its proposal takes the riskiest candidates while the budget lasts, rules unchecked."""
    planned = top_risk(day, cfg)
    candidate, eligible = _rules(planned)
    rows = np.flatnonzero(candidate)
    rows = rows[np.argsort(-day["churn_risk"].to_numpy()[rows], kind="stable")]
    taken = np.cumsum(rules.offer_costs(day, cfg)[rows, rules.LEVELS - 1]) <= cfg.daily_budget
    return planned, int((taken & ~eligible[rows]).sum())


def no_contact_decider(day, cfg, ds):
    return no_contact(day, cfg), 0


def simulate(sim: Simulator, decider: Callable, seed: int, start: dt.date) -> dict:
    """One episode of `decider` in the simulator: totals of money, contacts and rule breaks.

    Money twice: `net` as drawn (realized), and `expected`, the sum over the messages sent of their expected net
    revenue given the state they were sent in: the same quantity without the draw's noise (a policy's paths still
    differ by seed), which is what the upper bound is stated in."""
    sim.reset(seed, start)
    keys = ("net", "expected", "paid", "spend", "retained", "accepted", "contacts", "messages", "decisions", "before",
            "after")
    tot = dict.fromkeys(keys, 0.0)
    while not sim.done:
        day = sim.day_frame()
        planned, breaks = decider(day, sim.cfg, sim.today)
        contact = planned["contact"].to_numpy(dtype=bool)
        out = sim.contact(day.index.to_numpy()[contact], planned["offer_level"].to_numpy()[contact].astype(np.int64),
                          planned["followup_days"].to_numpy()[contact].astype(np.int64))
        follow, _ = sim.advance()
        for o in (out, follow):
            tot["net"] += o.realized.sum()
            tot["expected"] += o.expected.sum()
            tot["paid"] += o.paid.sum()
            tot["retained"] += o.retained.sum()
            tot["accepted"] += o.accepted.sum()
        tot["spend"] += planned.loc[contact, "offer_cost"].sum()
        tot["contacts"] += contact.sum()
        tot["decisions"] += len(day)
        tot["before"] += breaks
        tot["after"] += sum(rules.violations(planned, sim.cfg).values())
    tot["messages"] = sim.messages
    tot["after"] += sim.message_breaks  # every message, follow-ups included: the cooldown and the cap per customer
    return {k: float(v) for k, v in tot.items()}


def evaluate(sim: Simulator, deciders: dict[str, Callable], episodes: list[tuple[int, dt.date]]) -> list[dict]:
    """Every decider on the same (seed, start) episodes; one row per decider, money as the mean per episode."""
    rows = []
    for name, decider in deciders.items():
        runs = [simulate(sim, decider, seed, start) for seed, start in episodes]
        total = {k: sum(r[k] for r in runs) for k in runs[0]}
        net = [r["net"] for r in runs]
        rows.append({
            "policy": name,
            "expected_net_revenue": round(total["expected"] / len(runs), 2),
            "net_revenue_retained": round(total["net"] / len(runs), 2),
            "roi": round(total["net"] / total["paid"], 3) if total["paid"] > 0 else None,
            "contact_rate": round(total["contacts"] / total["decisions"], 5),
            "messages": round(total["messages"] / len(runs), 1),
            "retained_customers": round(total["retained"] / len(runs), 2),
            "violations_before": round(1000 * total["before"] / total["decisions"], 3),
            "violations_after": round(1000 * total["after"] / total["decisions"], 3),
            "accepted": round(total["accepted"] / len(runs), 2),
            "spend": round(total["spend"] / len(runs), 2),
            "net_revenue_retained_by_episode": [round(x, 2) for x in net],
            "expected_net_revenue_by_episode": [round(r["expected"], 2) for r in runs],
        })
    return rows


def evaluation_table(rows: list[dict]) -> str:
    """The evaluation as a fixed-width text table."""
    cols = ("policy", "expected_net_revenue", "of_bound", "net_revenue_retained", "roi", "contact_rate", "messages",
            "retained_customers", "violations_before", "violations_after", "spend")
    cols = tuple(c for c in cols if any(c in r for r in rows))
    cells = [[str(c) for c in cols]] + [["-" if r.get(c) is None else f"{r[c]:,}" if isinstance(r[c], float) else
                                         str(r[c]) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths)))
                     for row in cells)


def paired_margin(ours: list[float], theirs: list[float], confidence: float = 0.95) -> dict:
    """Mean per-episode difference of two policies run on the same seeds, with its t interval (paired: the common
    random numbers cancel most of the episode-to-episode noise)."""
    d = np.asarray(ours, dtype=np.float64) - np.asarray(theirs, dtype=np.float64)
    n, mean = len(d), float(d.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return {"mean": round(mean, 2), "low": round(mean - half, 2), "high": round(mean + half, 2), "episodes": n}


def best_followup(sim: Simulator, episodes: list[tuple[int, dt.date]], choices=range(DELAYS)) -> tuple[int, dict]:
    """The fixed follow-up choice under which greedy EV earns most on `episodes` (training seeds, never the held-out
    ones), and the expected net revenue of every choice."""
    net = {j: float(np.mean([simulate(sim, greedy_followup_decider(j), s, d)["expected"] for s, d in episodes]))
           for j in choices}
    return max(net, key=net.get), net
