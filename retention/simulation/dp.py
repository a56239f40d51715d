"""A per-customer dynamic program over (day, offer, follow-up) with a Lagrangian price on the budget: the strongest
policy we know how to write down, and an upper bound on what any policy of its class can earn.

Relaxing the daily budget with a price lambda_t per unit of committed cost on day t splits the cohort's problem into
one small problem per customer (Whittle, Bertsekas: Lagrangian relaxation of weakly coupled MDPs). Each customer's
problem is solved exactly by backward induction over the episode's days, with the simulator's own probabilities:
acceptance from the accept table at the customer's history, the world's efficacy, backfire (per customer) and
fatigue, churn hazard raised by each unaccepted message. For any prices >= 0,

    upper bound = sum over customers of V_i(day 0) + sum over days of lambda_t * daily budget

bounds the expected net revenue of every policy of the class that keeps every day's budget (weak duality); the
prices are found by subgradient steps on the days' expected spend (`fit_prices`).

The class: a customer's first contact may come on any day the hard rules allow (cooldown and fatigue cap against the
seeded contact history); a contact carries one offer level and a follow-up choice (none, or `rules.followup_days`);
the next contact comes once the previous contact has left the fatigue window (its follow-up may still be in it),
the earliest the cap allows after a follow-up (with the defaults: 3 messages in 30 days, two reserved per contact).
After a contact without a follow-up the rules would allow another a cooldown later; the class waits the window
there too: a campaign cadence ("one campaign per customer per month"). It keeps every message inside the cooldown
and the cap by construction and makes the state small: before the first contact, the day; after it, the day and
how many unaccepted messages the customer has had (last outcome failure, pdays past the cooldown's reach). Whether
the earlier follow-up is still in the window moves the acceptance a little; the recursion takes the best of those
variants, so the value it assigns a state is at least the true one and the bound stays a bound without that count
in the state. A customer who accepts is never contacted again; one who churns is gone. The simulator raises a
churn hazard from the message on, as the DP assumes. The evaluation reports the bound beside every policy, and a
policy outside the class (greedy EV re-contacting a cooldown after a contact without follow-up) could exceed it.

`DPPolicy` runs the solution in the simulator as a decider: each day every eligible customer's advantage of acting
now (the best action's value at the day's price, less the value of waiting) ranks them, and one budget pass takes
the positive ones. Solved in the world the simulator runs it is the oracle; solved in `base`, the plan's own model
of the effects, and run in another world, it is what a deployed DP would do there.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from retention.config import Config
from retention.deciding import rules
from retention.deciding.sampler import DELAYS
from retention.hashing import holdout_mask
from retention.scoring.features import NEVER, OUTCOMES
from retention.simulation.simulator import RISK_DAYS, Simulator, customer_backfire
from retention.simulation.worlds import World

FAILURE = OUTCOMES.index("failure")
NONEXISTENT = OUTCOMES.index("nonexistent")


@dataclass
class Solution:
    """A solved DP for one episode at prices `prices` (one per day)."""
    prices: np.ndarray
    value: np.ndarray
    """(n,) V_i at day 0 (0 for customers who are never candidates)."""
    spend: np.ndarray
    """(H,) expected committed cost of the contacts the solution makes on each day."""
    net: float
    """Expected net revenue of the relaxed solution (sum of value plus the prices paid for its spend)."""
    adv_f: np.ndarray
    """(H, n) advantage of acting now over waiting, before the first contact (-inf where no contact is allowed)."""
    act_f: np.ndarray
    """(H, n) the best action's index (level * DELAYS + delay choice) before the first contact."""
    adv_s: np.ndarray
    """(H, J, n) the same after j unaccepted messages."""
    act_s: np.ndarray
    gain_f: np.ndarray
    """(H, n) expected net revenue of the best action itself (both messages), before the first contact."""
    gain_s: np.ndarray
    vf: np.ndarray
    """(H + 1, n) value before the first contact, per day."""
    vs: np.ndarray
    """(H + 1, J, n) value when free to contact after m unaccepted messages, per day."""

    @property
    def bound(self) -> float:
        """The Lagrangian upper bound: sum of V_i plus the prices times the daily budgets (set by `bound_for`)."""
        return self._bound

    def bound_for(self, daily_budget: float) -> float:
        self._bound = float(self.value.sum() + self.prices.sum() * daily_budget)
        return self._bound


class CustomerDP:
    """The per-customer DP of one episode (call after `sim.reset`), in `world` (the simulator's by default)."""

    def __init__(self, sim: Simulator, world: World | None = None):
        self.sim, self.cfg, self.world = sim, sim.cfg, world or sim.world
        cfg, n, H = sim.cfg, len(sim.ids), sim.horizon
        self.H, self.W = H, cfg.fatigue_window_days
        self.delays = rules.followup_days(np.arange(DELAYS), cfg)
        self.J = 2 * (H // max(self.W, 1) + 2)  # most unaccepted messages a customer can have had, plus room
        self.value, self.risk = sim.value, sim.base_risk
        self.backfire = customer_backfire(sim.ids, self.world)
        self.pct, self.efficacy = np.asarray(cfg.offer_pcts), np.asarray(self.world.efficacy)
        self.message_cost = sim.message_cost
        self.cost = rules.committed_costs(self.value, self.message_cost, cfg)  # (n, 4)
        self.candidate = ~sim.suppressed & ~sim.holdout
        # daily survival after j unaccepted messages: the hazard of risk * (1 + backfire)^j over RISK_DAYS
        j = np.arange(self.J + 3)[:, None]
        scaled = np.clip(self.risk[None, :] * (1.0 + self.backfire[None, :]) ** j, 0.0, 1.0)
        self.q = (1.0 - scaled) ** (1.0 / RISK_DAYS)  # (J+3, n)
        self._prepare()

    # acceptance and money, from the simulator's own tables

    def _accept(self, window, pdays, previous, outcome, level) -> np.ndarray:
        """P(accept) for broadcastable history features (customers on axis 0), as the simulator computes it."""
        sim, n = self.sim, len(self.sim.ids)
        shape = (n,) + (1,) * (np.ndim(level) - 1)
        senior, phone = sim.senior.reshape(shape), sim.phone.reshape(shape)
        window = np.asarray(window)
        full = np.broadcast_shapes(np.shape(level), senior.shape, window.shape, np.shape(pdays), np.shape(previous),
                                   np.shape(outcome))
        if self.world.history:
            history = window + 1, pdays, previous, outcome
        else:  # as if never contacted (worlds.py: no_history)
            history = 1, NEVER, 0, NONEXISTENT
        args = [np.broadcast_to(np.asarray(a, dtype=np.int64), full) for a in (senior, phone, level, *history)]
        return sim.table(sim.date_code, *args) * self.world.fatigue ** np.broadcast_to(window, full)

    def _reward(self, accept, level) -> np.ndarray:
        """The simulator's expected net revenue of one message with offer `level` and acceptance `accept`."""
        shape = (len(self.value),) + (1,) * (accept.ndim - 1)
        v, r, b, m = (x.reshape(shape) for x in (self.value, self.risk, self.backfire, self.message_cost))
        lift = rules.churn_lift(r, accept, self.efficacy[level], b)
        return v * (lift - accept * self.pct[level]) - m

    def _prepare(self) -> None:
        """Everything that does not depend on the prices: acceptances and rewards of first messages and follow-ups."""
        sim, cfg, H, W = self.sim, self.cfg, self.H, self.W
        level = np.arange(rules.LEVELS)[None, :]
        lvl_d = np.arange(rules.LEVELS)[None, :, None]
        d = self.delays[None, None, :]
        # the seeded history, aged: day t's window count and days since the last message, per customer
        days = sim.contact_days  # slots, most recent first; _EMPTY far in the past
        t = np.arange(H + int(self.delays.max()) + 1)
        recent = days[None, :, :] > (t[:, None, None] - W)
        self.seed_window = recent.sum(axis=2)  # (T, n)
        last = days[:, 0]
        self.seed_since = np.where(last < -10**5, NEVER, t[:, None] - last[None, :])  # (T, n)
        total, outcome = sim.total, sim.outcome
        self.allowed_f = (self.candidate[None, :]
                          & rules.contact_allowed(self.seed_since, self.seed_window, cfg))[:H]  # (H, n)
        # before the first contact: per day, first message (n, 4) and follow-up (n, 4, D)
        self.a1f = np.stack([self._accept(self.seed_window[s][:, None], self.seed_since[s][:, None],
                                          total[:, None], outcome[:, None], level) for s in range(H)])
        self.a2f = np.stack([self._accept(self.seed_window[s + self.delays].T[:, None, :] + 1, d,
                                          total[:, None, None] + 1, FAILURE, lvl_d) for s in range(H)])
        self.r1f = np.stack([self._reward(a, level[0]) for a in self.a1f])
        self.r2f = np.stack([self._reward(a, lvl_d[0]) for a in self.a2f])
        # after m unaccepted messages: last outcome failure, pdays past the cooldown's reach; variant v of the first
        # message: v = 1 when the previous contact's follow-up is still in the window (pdays then at least
        # W - the longest follow-up); of the follow-up: 1 + v' messages in the window before it
        j, recent = np.arange(self.J), W - int(self.delays.max())
        self.a1s = np.stack([np.stack([self._accept(np.full((1, 1), v, np.int64), W if v == 0 else recent,
                                                    total[:, None] + k, FAILURE, level) for v in (0, 1)])
                             for k in j])  # (J, 2, n, 4)
        self.a2s = np.stack([np.stack([self._accept(np.full((1, 1, 1), 1 + v, np.int64), d,
                                                    total[:, None, None] + k + 1, FAILURE, lvl_d) for v in (0, 1)])
                             for k in j])  # (J, 2, n, 4, D)
        self.r1s = np.stack([[self._reward(a, level[0]) for a in pair] for pair in self.a1s])
        self.r2s = np.stack([[self._reward(a, lvl_d[0]) for a in pair] for pair in self.a2s])

    # the backward induction

    def _q(self, t, m, a1, r1, a2, r2, vs, prices, rows=slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """(n, 4, D) value at day-t prices of each (level, follow-up) action of `rows` (all by default) from a state
        with m unaccepted messages, and the action's own expected net revenue (both messages, no continuation).
        a1, r1 (n, 4) and a2, r2 (n, 4, D): acceptance and reward of the first message and the follow-up, of `rows`.
        The next contact may come W days after this one (its follow-up, if any, then still in the window)."""
        H, W, d, J = self.H, self.W, self.delays, self.J
        q1, q2 = self.q[m + 1][rows][:, None, None], self.q[m + 2][rows][:, None, None]
        sent = (d > 0) & (t + d < H)  # a follow-up past the horizon is never sent
        reach = np.where(sent, q1 ** d, 0.0)  # alive at the follow-up
        after_one = vs[min(t + W, H), min(m + 1, J - 1)][rows][:, None, None]
        after_two = vs[min(t + W, H), min(m + 2, J - 1)][rows][:, None, None]
        rest = (1.0 - a1[:, :, None]) * np.where(
            sent, reach * (r2 + (1.0 - a2) * q2 ** (W - d) * after_two), q1 ** W * after_one)
        own = r1[:, :, None] + (1.0 - a1[:, :, None]) * reach * r2
        q = r1[:, :, None] + rest - prices[t] * self.cost[rows][:, :, None]
        return q, own

    VARIANTS = ((0, 0), (1, 0), (1, 1))
    """(first message, follow-up) variants of a state after earlier contacts: the earlier follow-up out of the window;
    in it at the first message only; in it at both (it leaves after more days than the new follow-up waits)."""

    def _q_after(self, t, m, vs, prices) -> tuple[np.ndarray, np.ndarray]:
        """`_q` after m unaccepted messages, the best over the window variants: the value a state (m, days until the
        earlier follow-up leaves the window) can have is at most this, which keeps the bound a bound without that
        count in the state (the policy reads each customer's own variant: `day_values`)."""
        best = own = None
        for v1, v2 in self.VARIANTS:
            q, o = self._q(t, m, self.a1s[m, v1], self.r1s[m, v1], self.a2s[m, v2], self.r2s[m, v2], vs, prices)
            if best is None:
                best, own = q, o
            else:
                own = np.where(q > best, o, own)
                best = np.maximum(best, q)
        return best, own

    def _reachable(self, t: int) -> range:
        """Unaccepted-message counts m >= 1 a customer free to contact on day t can have: each contact and its
        follow-up took at least W days, so at most 2 * (t // W)."""
        return range(1, min(self.J, 2 * (t // max(self.W, 1)) + 1))

    def solve(self, prices) -> Solution:
        """Backward induction at `prices` (a number, or one per day), then the forward pass for the expected spend."""
        H, J, n = self.H, self.J, len(self.value)
        prices = np.broadcast_to(np.asarray(prices, dtype=np.float64), (H,)).copy()
        vs = np.zeros((H + 1, J, n))  # value with j unaccepted messages, free to contact (the class allows it)
        vf = np.zeros((H + 1, n))     # value before the first contact
        adv_f, act_f, gain_f = np.full((H, n), -np.inf), np.zeros((H, n), np.int64), np.zeros((H, n))
        adv_s, act_s, gain_s = np.full((H, J, n), -np.inf), np.zeros((H, J, n), np.int64), np.zeros((H, J, n))
        rows = np.arange(n)
        for t in range(H - 1, -1, -1):
            for m in self._reachable(t):
                q, own = self._q_after(t, m, vs, prices)
                flat, owns = q.reshape(n, -1), own.reshape(n, -1)
                best = flat.argmax(axis=1)
                wait = self.q[m] * vs[t + 1, m]
                act = flat[rows, best]
                adv_s[t, m] = np.where(self.candidate, act - wait, -np.inf)
                act_s[t, m], gain_s[t, m] = best, owns[rows, best]
                vs[t, m] = np.where(self.candidate, np.maximum(wait, act), 0.0)
            q, own = self._q(t, 0, self.a1f[t], self.r1f[t], self.a2f[t], self.r2f[t], vs, prices)
            flat, owns = q.reshape(n, -1), own.reshape(n, -1)
            best = flat.argmax(axis=1)
            wait = self.q[0] * vf[t + 1]
            act = np.where(self.allowed_f[t], flat[rows, best], -np.inf)
            adv_f[t], act_f[t], gain_f[t] = np.where(self.candidate, act - wait, -np.inf), best, owns[rows, best]
            vf[t] = np.where(self.candidate, np.maximum(wait, act), 0.0)
        spend = self._spend(act_f, adv_f, act_s, adv_s)
        sol = Solution(prices, vf[0], spend, float(vf[0].sum() + prices @ spend), adv_f, act_f, adv_s, act_s,
                       gain_f, gain_s, vf, vs)
        sol.bound_for(self.cfg.daily_budget)
        return sol

    def day_values(self, sol: Solution, t: int, rows: np.ndarray, sent: np.ndarray, left: np.ndarray):
        """For `rows` on day t with `sent` unaccepted messages and an earlier follow-up `left` days from leaving the
        window (0: none in it): (q0, own, wait) where q0 (n, 4, D) is each action's value without day t's price (the
        later days' prices stay in the continuation), own its expected net revenue, and wait the value of
        waiting."""
        n = len(rows)
        q0, own, wait = np.zeros((n, rules.LEVELS, DELAYS)), np.zeros((n, rules.LEVELS, DELAYS)), np.zeros(n)
        free = np.zeros(self.H)
        for m in np.unique(sent):
            sel = sent == m
            r = rows[sel]
            if m == 0:
                a1, r1, a2, r2, later = self.a1f[t], self.r1f[t], self.a2f[t], self.r2f[t], sol.vf[t + 1]
            else:
                k, v = min(int(m), self.J - 1), (left[sel] > 0).astype(np.int64)
                a1, r1, later = self.a1s[k, v, r], self.r1s[k, v, r], sol.vs[t + 1, k]
                late = left[sel][:, None, None] > self.delays  # the earlier follow-up still in at the new one
                a2 = np.where(late, self.a2s[k, 1][r], self.a2s[k, 0][r])
                r2 = np.where(late, self.r2s[k, 1][r], self.r2s[k, 0][r])
                q, o = self._q(t, int(m), a1, r1, a2, r2, sol.vs, free, r)
                q0[sel], own[sel], wait[sel] = q, o, self.q[k][r] * later[r]
                continue
            q, o = self._q(t, int(m), a1[r], r1[r], a2[r], r2[r], sol.vs, free, r)
            q0[sel], own[sel], wait[sel] = q, o, self.q[min(int(m), self.J - 1)][r] * later[r]
        return q0, own, wait

    def _spend(self, act_f, adv_f, act_s, adv_s) -> np.ndarray:
        """(H,) expected committed cost per day of the relaxed solution: the forward pass of each customer's state
        probabilities (alive, not accepted, free to contact before the first contact or after m unaccepted
        messages)."""
        H, J, W, n = self.H, self.J, self.W, len(self.value)
        rows, spend = np.arange(n), np.zeros(H)
        pf = self.candidate.astype(np.float64)
        ps = np.zeros((H + 1, J, n))  # probability of being free to contact with m unaccepted messages on day t
        for t in range(H):
            for m in (0, *self._reachable(t)):
                if m == 0:
                    p, go, a, a1, a2 = pf, adv_f[t] > 0, act_f[t], self.a1f[t], self.a2f[t]
                else:
                    p, go, a, a1, a2 = ps[t, m], adv_s[t, m] > 0, act_s[t, m], self.a1s[m, 0], self.a2s[m, 0]
                level, choice = a // DELAYS, a % DELAYS
                mass = np.where(go, p, 0.0)
                spend[t] += float((mass * self.cost[rows, level]).sum())
                d = self.delays[choice]
                missed = mass * (1.0 - a1[rows, level])
                sent = (d > 0) & (t + d < H)
                if t + W < H:  # no follow-up: free again W days later with m + 1 unaccepted messages
                    ps[t + W, min(m + 1, J - 1)] += np.where(sent, 0.0, missed * self.q[m + 1] ** W)
                if t + W < H:  # with one: free again W days later, the follow-up still in the window
                    ps[t + W, min(m + 2, J - 1)] += np.where(
                        sent, missed * self.q[m + 1] ** d * (1.0 - a2[rows, level, choice]) * self.q[m + 2] ** (W - d),
                        0.0)
                stay = np.where(go, 0.0, p) * self.q[m]
                if m == 0:
                    pf = stay
                else:
                    ps[t + 1, m] += stay
        return spend

    def fit_prices(self, budget: float, steps: int = 40, target: float | None = None,
                   start: np.ndarray | None = None) -> Solution:
        """Prices that bring the relaxed solution's expected spend to `budget` each day: one price for every day by
        bisection on the total, then subgradient steps per day (a day over budget gets dearer). With `target` (what
        a policy is known to earn, e.g. this DP's own run) the steps are Polyak's, (bound - target) / |g|^2, which
        converge much faster on this piecewise-linear dual; without, multiplicative steps. `start`: prices to go on
        from instead of the bisection. Any prices give a valid bound; the lowest found is kept."""
        H = self.H
        if start is not None:
            return self._descend(self.solve(start), budget, steps, target)
        free = self.solve(0.0)
        if free.spend.sum() <= budget * H:
            return free
        lo, hi = 0.0, 1.0
        while self.solve(hi).spend.sum() > budget * H:
            lo, hi = hi, hi * 4
        for _ in range(12):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.solve(mid).spend.sum() > budget * H else (lo, mid)
        return self._descend(self.solve(hi), budget, steps, target)

    def _descend(self, best: Solution, budget: float, steps: int, target: float | None) -> Solution:
        """Subgradient steps on the per-day prices from `best`'s; the solution of lowest bound found."""
        prices, sol = best.prices.copy(), best
        for i in range(steps):
            excess = sol.spend - budget  # the bound's subgradient is -excess
            if target is not None:
                step = max(sol.bound - target, 0.0) / max(float(excess @ excess), 1e-9)
                prices = np.maximum(prices + step * excess, 0.0)
            else:
                prices = np.maximum(prices * np.exp(0.5 / np.sqrt(i + 1) * np.clip(excess / budget, -1, 3)), 1e-6)
            sol = self.solve(prices)
            if sol.bound < best.bound:
                best = sol
        return best


class DPPolicy:
    """The solved DP as a simulator decider: (day, cfg, ds) -> (plan, 0 proposal breaks).

    Solved anew at the start of every episode (the seeded history differs) at fixed `prices` (`fit_prices` on
    training seeds), in `world`, or in the simulator's own world when None.
    """

    def __init__(self, sim: Simulator, prices, world: World | None = None, name: str = "dp"):
        self.sim, self.prices, self.world, self.name = sim, prices, world, name
        self.solution: Solution | None = None
        self._episode = None

    def _begin(self) -> None:
        sim = self.sim
        self.dp = CustomerDP(sim, self.world)
        self.solution, self.delays = self.dp.solve(self.prices), self.dp.delays
        self.free_from = np.zeros(len(sim.ids), np.int64)  # the class: no contact before this day
        self.day_prices = np.zeros(sim.horizon)  # what each day's budget was worth at the margin
        self._episode = (id(sim.contact_days), sim.start)

    def __call__(self, day, cfg: Config, ds):
        sim = self.sim
        if self._episode != (id(sim.contact_days), sim.start):
            self._begin()
        t, rows = sim.t, day.index.to_numpy()
        sent = (sim.contact_days[rows] >= 0).sum(axis=1)  # messages of this episode, all unaccepted
        age = t - sim.contact_days[rows, 0]  # of the last message (the previous contact's follow-up, if any)
        left = np.where((sent > 0) & (age < cfg.fatigue_window_days), cfg.fatigue_window_days - age, 0)
        q0, own, wait = self.dp.day_values(self.solution, t, rows, sent, left)
        cost = self.dp.cost[rows]
        free = self.free_from[rows] <= t
        holdout = holdout_mask(day["customer_id"], cfg.holdout_share)
        code = rules.reason_codes(day, cfg, holdout)
        open_ = (code == 0) & free
        price = day_price(q0[open_], cost[open_], wait[open_], cfg.daily_budget)
        self.day_prices[t] = price
        flat = (q0 - price * cost[:, :, None]).reshape(len(rows), -1)
        act = flat.argmax(axis=1)
        adv = flat[np.arange(len(rows)), act] - wait
        gain = own.reshape(len(rows), -1)[np.arange(len(rows)), act]
        want = open_ & (adv > 0)
        level, choice = act // DELAYS, act % DELAYS
        spent = cost[np.arange(len(rows)), level]
        contact = np.zeros(len(rows), bool)
        contact[want] = rules.budget_pass(adv[want], spent[want], cfg.daily_budget)
        self.free_from[rows[contact]] = t + cfg.fatigue_window_days
        reason = np.where(code != 0, code, np.where(contact, rules.REASON["contact"],
                                                    np.where(want, rules.REASON["budget"], rules.REASON["wait"])))
        plan = rules.plan_frame(day, cfg, contact, np.where(contact, level, 0), np.where(contact, choice, 0),
                                np.ones(len(rows)), holdout, reason, self.name, np.where(contact, gain, 0.0))
        return plan, 0


def day_price(q0: np.ndarray, cost: np.ndarray, wait: np.ndarray, budget: float, rounds: int = 40) -> float:
    """The day's own price of the budget: the least price at which the customers whose best action beats waiting
    (q0 - price * cost over their actions, (n, 4, D)) fit `budget` (0 when everyone who gains fits)."""
    def demand(price):
        flat = (q0 - price * cost[:, :, None]).reshape(len(q0), -1)
        act = flat.argmax(axis=1)
        go = flat[np.arange(len(q0)), act] > wait
        return float(cost[np.arange(len(q0)), act // DELAYS][go].sum())
    if len(q0) == 0 or demand(0.0) <= budget:
        return 0.0
    lo, hi = 0.0, 1.0
    while demand(hi) > budget:
        lo, hi = hi, hi * 2
    for _ in range(rounds):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if demand(mid) > budget else (lo, mid)
    return hi


def upper_bound(sim: Simulator, seed: int, start: dt.date, prices) -> float:
    """The Lagrangian upper bound of one episode at `prices` (valid at any prices >= 0; see the module docstring)."""
    sim.reset(seed, start)
    return CustomerDP(sim).solve(prices).bound
