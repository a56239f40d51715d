"""The one-decision-per-step Gymnasium view of the simulator, for tools that expect gymnasium.Env.

Kept out of the simulator so that nothing on the daily path or in training imports gymnasium.
"""
from __future__ import annotations

import datetime as dt

import gymnasium as gym
import numpy as np

from retention.deciding import rules
from retention.deciding.sampler import BUDGET, DELAYS, OBS, candidate_order, observe
from retention.simulation.simulator import Simulator


class RetentionEnv(gym.Env):
    """One customer decision per step, in the rollout's order; a day ends when its candidates are decided.

    Observation: the 9 state values (OBS) of the customer to decide, budget_remaining exact. Action:
    MultiDiscrete([2, 4, 8]) = (contact, offer level, follow-up delay). A contact the rules forbid (cooldown,
    fatigue, an offer that no longer fits the day's budget) is not made; the break is charged instead. Reward:
    net revenue retained as drawn (accepted value x (would churn - pct) - channel cost, follow-ups included on the
    step that ends the day) - penalty x breaks. info["costs"] holds the breaks by rule, info["action_mask"] the
    legal choices. The episode is truncated after the simulator's horizon.
    """

    metadata = {"render_modes": []}
    RULES = ("budget", "fatigue", "cooldown")

    def __init__(self, sim: Simulator, start: dt.date, penalty: float = 100.0):
        self.sim, self.start, self.penalty = sim, start, penalty
        self.observation_space = gym.spaces.Box(0.0, 1.0, (len(OBS),), np.float32)
        self.action_space = gym.spaces.MultiDiscrete([2, rules.LEVELS, DELAYS])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.sim.reset(int(self.np_random.integers(2**31)), self.start)
        self._next_day_with_candidates()
        return self._obs(), self._info({r: 0 for r in self.RULES})

    def _begin_day(self) -> None:
        sim = self.sim
        rows = sim.candidates()
        rows = rows[candidate_order(sim.risk()[rows], sim.value[rows])]
        self.queue, self.pos, self.left = rows, 0, float(sim.cfg.daily_budget)
        accept = sim.accept_probs(rows)
        self.costs = sim.offer_costs(rows, accept)
        days_since, window = sim.days_since_contact()[rows], sim.contacts_in_window()[rows]
        self.base = observe(sim.risk()[rows], accept, days_since, window, sim.cfg)
        self.allowed = rules.contact_allowed(days_since, window, sim.cfg)
        self.breaks = np.stack([rules.at_fatigue_cap(window, sim.cfg), rules.cooldown_active(days_since, sim.cfg)], 1)

    def _next_day_with_candidates(self) -> float:
        """Advance past days with nobody to decide; returns the follow-up revenue earned on the way."""
        earned = 0.0
        self._begin_day()
        while len(self.queue) == 0 and not self.sim.done:
            earned += float(self.sim.advance()[0].realized.sum())
            if not self.sim.done:
                self._begin_day()
        return earned

    def _obs(self) -> np.ndarray:
        if self.pos >= len(self.queue):  # horizon reached: a terminal observation
            return np.zeros(len(OBS), dtype=np.float32)
        obs = self.base[self.pos].copy()
        budget = self.sim.cfg.daily_budget
        obs[BUDGET] = self.left / budget if budget > 0 else 0.0
        return obs

    def _info(self, costs: dict) -> dict:
        mask = np.zeros(2 + rules.LEVELS + DELAYS, dtype=np.int8)
        if self.pos < len(self.queue):
            fits = self.costs[self.pos] <= self.left
            ok = bool(self.allowed[self.pos])
            mask[0], mask[1], mask[2:2 + rules.LEVELS], mask[2 + rules.LEVELS:] = 1, ok and fits.any(), fits, 1
        return {"costs": costs, "action_mask": mask, "day": self.sim.t}

    def step(self, action):
        c, k, d = (int(a) for a in action)
        i, (fatigued, cooling) = self.queue[self.pos], self.breaks[self.pos]
        cost = float(self.costs[self.pos, k])
        breaks = {"budget": int(c == 1 and cost > self.left), "fatigue": int(c == 1 and fatigued),
                  "cooldown": int(c == 1 and cooling)}
        reward = -self.penalty * sum(breaks.values())
        if c == 1 and not any(breaks.values()):
            reward += float(self.sim.contact(np.array([i]), np.array([k]), rules.followup_days([d], self.sim.cfg)).realized[i])
            self.left -= cost
        self.pos += 1
        if self.pos == len(self.queue):
            reward += float(self.sim.advance()[0].realized.sum())
            if not self.sim.done:
                reward += self._next_day_with_candidates()
        truncated = self.sim.done and self.pos >= len(self.queue)
        return self._obs(), reward, False, truncated, self._info(breaks)
