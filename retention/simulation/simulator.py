"""The retention simulator: scored IBM Telco customers lived forward day by day under the hard rules.

Dynamics, all from the calibrated champions (nothing hand-tuned but the time scale):
- churn: churn_risk is P(churn within RISK_DAYS = 30 days) (IBM Telco's label is "left within the last month"),
  so a customer churns on each day with hazard 1 - (1 - risk)^(1/30); the churn day is drawn once per episode
  and shared by every policy run on that seed (common random numbers).
- treatment effects, in the world the simulator is given (`worlds.py`: base, no_history, fatigue, backfire):
  acceptance from the accept champion at a neutral calendar day (at the customer's current history, or as never
  contacted in `no_history`; lowered by repeated contact in `fatigue`); an accepted offer saves a would-be churner
  with the offer's efficacy (saved: no churn for the rest of the horizon, churn_risk 0 in the state, never
  contacted again) and costs its discount either way; a contacted customer who does not accept churns at a hazard
  raised by the world's backfire (more in a hidden segment in `backfire`) from that day on (`_raise_hazard`). Every
  message pays its channel's cost.
- money, per message: realized = value * (1[saved a customer who would have churned within 30 days]
  - 1[a backfire moved the churn day into those 30 days]) - discount paid - message cost; expected (the training
  reward) is its expectation, value * (risk * (a * e - (1 - a) * b) - a * pct) - message cost, which in the base
  world is exactly the plan's `rules.expected_values`. A policy that contacts nobody earns exactly 0.
- follow-up: a contact with follow-up d > 0 days (d >= the cooldown, `rules.followup_days`) repeats the same offer d
  days later if the customer has neither accepted nor churned. Every follow-up is a message like any other: it pays
  its channel cost and enters the contact days (fatigue window, cooldown) when sent; while it is pending it counts
  too (the daily plan's contact ledger does the same), so no other message can fall inside its cooldown. It needs
  no new budget (the offer's worst case was committed). It is accepted with the champion's probability for that
  day (pdays = d, campaign counting the contact).
- contacts add to the fatigue window and start the cooldown; suppressed and holdout customers, and customers who
  already accepted an offer, are never candidates.

`Simulator` steps the whole cohort at once with numpy; `deciding.sampler.decide_day` is the hard-rule-enforcing
sampler the daily rollout and training share (the state's budget_remaining is the budget left when the row's block of
candidates starts; the budget mask is exact per row); `gym_env.RetentionEnv` is the one-decision-per-step Gymnasium
view, imported only by whoever wants it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from retention.deciding import rules
from retention.hashing import holdout_mask, stable_hash, unit_interval
from retention.simulation.worlds import World, world as named_world
from retention.datasets import seed as seeding
from retention.scoring.accept import AcceptModel
from retention.config import Config
from retention.scoring.features import CALENDAR_MONTH, CALENDAR_WEEKDAY, MONTHS, NEVER, OUTCOMES, WEEKDAYS, accept_features
from retention.scoring.risk import RiskModel
from retention.scoring.score import score
from retention.datasets.telco import read_telco

NEUTRAL_DAY = dt.date(2026, 6, 4)
"""The calendar day every acceptance is read at: a June Thursday, whose bank acceptance is near the data's mean."""
BACKFIRE_SALT = "backfire|"
"""Prefix hashed with customer_id for the hidden backfire segment: independent of the holdout's hash."""
RISK_DAYS = 30
"""churn_risk is the probability of churning within this many days."""
HORIZON_DAYS = 60
"""Default simulated days per episode."""
HISTORY_SLOTS = 8
"""Most recent contact days kept per customer: more than any fatigue cap plus the seeded history."""
_EMPTY = -(10**6)
"""Contact-day slot that holds no contact."""


# cohort


def history_features(customers: pd.DataFrame, history: pd.DataFrame, suppression: pd.DataFrame, ds: dt.date,
                     window: int) -> pd.DataFrame:
    """`customers` plus the extract's history columns, as sql/daily_customers.sql computes them."""
    when = pd.to_datetime(history["contact_date"])
    past = history.assign(days=(pd.Timestamp(ds) - when).dt.days.to_numpy())[when < pd.Timestamp(ds)]
    by = past.groupby("customer_id")["days"]
    last = past.sort_values(["contact_date", "plan_date"]).drop_duplicates("customer_id", keep="last")
    accepted = last.set_index("customer_id")["accepted"].reindex(customers["customer_id"])
    since = suppression.loc[pd.to_datetime(suppression["since"]) <= pd.Timestamp(ds), "customer_id"]
    ids = customers["customer_id"]
    return customers.assign(
        contacts_in_window=(past["days"] < window).groupby(past["customer_id"]).sum().reindex(ids, fill_value=0)
        .to_numpy().astype(np.int64),
        days_since_contact=by.min().reindex(ids, fill_value=NEVER).to_numpy().astype(np.int64),
        total_contacts=by.size().reindex(ids, fill_value=0).to_numpy().astype(np.int64),
        last_outcome=np.where(~ids.isin(past["customer_id"]).to_numpy(), "nonexistent",
                              np.where(accepted.fillna(False).astype(bool).to_numpy(), "success", "failure")),
        suppressed=ids.isin(since).to_numpy(),
    )


def telco_cohort(data_dir: str | Path, risk_dir: str | Path, accept_dir: str | Path, ds: dt.date, seed: int,
                 cfg: Config) -> pd.DataFrame:
    """The 7,043 real IBM Telco customers as the day `ds` sees them, scored by the champions (the simulated cohort)."""
    customers = seeding.customers_from_telco(read_telco(data_dir), ds)
    day = history_features(customers, seeding.history_for(customers, ds, seed),
                           seeding.suppression_for(customers, ds, seed), ds, cfg.fatigue_window_days)
    return score(day, RiskModel.load(risk_dir), AcceptModel.load(accept_dir), ds)


def customer_backfire(ids, world: World) -> np.ndarray:
    """Each customer's backfire in `world`: its base rise, plus its extra in the hidden segment (hashed ids)."""
    hashed = unit_interval(stable_hash(BACKFIRE_SALT + pd.Series(ids, dtype="str")))
    return world.backfire + world.backfire_extra * (hashed < world.backfire_share)


# acceptance from the champion


def _clip_points(model: AcceptModel) -> dict[str, int]:
    """Per integer input, the value from which the trees no longer tell values apart (pdays: below NEVER)."""
    trees = model.booster_.get_booster().trees_to_dataframe()
    clip = {}
    for feature in ("campaign", "pdays", "previous"):
        splits = trees.loc[(trees["Feature"] == feature) & (trees["Split"] < NEVER), "Split"]
        clip[feature] = int(np.ceil(splits.max())) if len(splits) else 1  # x < split goes left
    return clip


def date_code(day: dt.date) -> int:
    """Index of the (bank month, bank weekday) the accept features give a send on `day`."""
    return MONTHS.index(CALENDAR_MONTH[day.month - 1]) * len(WEEKDAYS) + WEEKDAYS.index(CALENDAR_WEEKDAY[day.weekday()])


class AcceptTable:
    """The accept champion's P(accept) on the grid of its discrete inputs, each cell predicted once, when first used.

    In the simulator every input is discrete (date, senior, channel, offer level, campaign, pdays, previous,
    poutcome), so a lookup equals model.predict_proba; values past the trees' last split are clipped to it.
    """

    def __init__(self, model: AcceptModel):
        self.model = model
        self.clip_ = _clip_points(model)
        self.shape_ = (len(MONTHS) * len(WEEKDAYS), 2, 2, rules.LEVELS, self.clip_["campaign"] + 1,
                       self.clip_["pdays"] + 2, self.clip_["previous"] + 1, len(OUTCOMES))
        self.p_ = np.full(int(np.prod(self.shape_)), np.nan, dtype=np.float32)
        self.block_ = int(np.prod(self.shape_[4:]))  # cells per (date, senior, channel, level)

    def __call__(self, code: int, senior, phone, level, campaign, pdays, previous, outcome) -> np.ndarray:
        """P(accept) per row; pdays NEVER for never contacted, outcome an index into OUTCOMES."""
        pdays = np.where(pdays >= NEVER, self.clip_["pdays"] + 1, np.minimum(pdays, self.clip_["pdays"]))
        keys = np.ravel_multi_index((np.broadcast_to(code, np.shape(level)), senior, phone, level,
                                     np.minimum(campaign, self.clip_["campaign"]), pdays,
                                     np.minimum(previous, self.clip_["previous"]), outcome), self.shape_)
        missing = np.isnan(self.p_[keys])
        if missing.any():
            # fill whole (date, senior, channel, level) blocks: one predict call per new date, not per new cell
            head = np.unique(keys[missing] // self.block_)
            cells = (head[:, None] * self.block_ + np.arange(self.block_)).ravel()
            self.p_[cells] = self._predict(cells)
        return self.p_[keys].astype(np.float64)

    def _predict(self, keys: np.ndarray) -> np.ndarray:
        code, senior, phone, level, campaign, pdays, previous, outcome = np.unravel_index(keys, self.shape_)
        mapped = pd.DataFrame({
            "offer_level": level, "campaign": campaign, "previous": previous, "senior": senior,
            "pdays": np.where(pdays > self.clip_["pdays"], NEVER, pdays),
            "contact": np.where(phone == 1, "telephone", "cellular"),
            "poutcome": np.asarray(OUTCOMES)[outcome],
            "month": np.asarray(MONTHS)[code // len(WEEKDAYS)],
            "day_of_week": np.asarray(WEEKDAYS)[code % len(WEEKDAYS)],
        })
        return self.model.predict_proba(accept_features(mapped))


# the simulator


@dataclass
class Outcome:
    """What contacts or follow-ups earned on one day, per customer (zeros elsewhere)."""
    expected: np.ndarray
    """Expected net revenue retained given the action (the training reward)."""
    realized: np.ndarray
    """Incremental net revenue as drawn (see the module docstring)."""
    accepted: np.ndarray
    retained: np.ndarray
    """Saved by an accepted offer, and would have churned within RISK_DAYS."""
    paid: np.ndarray
    """Discount granted plus the message's cost."""


class Simulator:
    """A cohort lived forward a day at a time, every customer at once (numpy, no loop per customer).

    `cohort` is a scored day (telco_cohort); `table` is an AcceptTable, or any function with its signature.
    """

    def __init__(self, cohort: pd.DataFrame, table: Callable[..., np.ndarray], cfg: Config,
                 horizon: int = HORIZON_DAYS, world: World | None = None):
        self.cfg, self.table, self.horizon = cfg, table, horizon
        self.world = world or named_world(cfg)
        self.customers = cohort.reset_index(drop=True)
        self.ids = self.customers["customer_id"].to_numpy()
        self.value = self.customers["customer_value"].to_numpy(dtype=np.float64)
        self.base_risk = self.customers["churn_risk"].to_numpy(dtype=np.float64)
        self.senior = self.customers["senior_citizen"].to_numpy(dtype=bool).astype(np.int64)
        self.channel = self.customers["channel"].to_numpy()
        self.phone = (self.channel == "phone").astype(np.int64)
        self.message_cost = rules.channel_message_costs(self.channel, cfg, self.ids)
        self.holdout = holdout_mask(self.ids, cfg.holdout_share)
        self.pcts, self.efficacy = np.asarray(cfg.offer_pcts), np.asarray(self.world.efficacy)
        self.backfire = customer_backfire(self.ids, self.world)
        self.date_code = date_code(NEUTRAL_DAY)

    def reset(self, seed: int, start: dt.date) -> None:
        """Day 0 = `start`: a fresh seeded contact history and suppression list, churn days and luck."""
        n, rng = len(self.ids), np.random.default_rng([seed, start.toordinal()])
        self.start, self.t = start, 0
        history = seeding.history_for(self.customers, start, seed)
        days = (pd.Timestamp(start) - pd.to_datetime(history["contact_date"])).dt.days.to_numpy()
        self.suppressed = np.isin(self.ids, seeding.suppression_for(self.customers, start, seed)["customer_id"])
        self._load_history(history["customer_id"].to_numpy(), -days, history["accepted"].to_numpy(dtype=bool))
        self.u_churn, self.hazard_scale = rng.random(n), np.ones(n)
        with np.errstate(divide="ignore"):
            self.churn_time = -np.log(self.u_churn) / self._daily_hazard(np.arange(n))  # exponential clock
        self.churn_day = self._churn_days(np.arange(n))
        self.u_contact, self.u_followup = rng.random((self.horizon + 1, n)), rng.random((self.horizon + 1, n))
        self.u_save = rng.random((2, self.horizon + 1, n))  # drawn last: the draws above stay as they were
        self.alive, self.secured, self.accepted = np.ones(n, dtype=bool), np.zeros(n, dtype=bool), np.zeros(n, bool)
        self.followup_day, self.followup_level = np.full(n, -1), np.zeros(n, dtype=np.int64)
        self.messages, self.message_breaks = 0, 0

    def _daily_hazard(self, rows: np.ndarray) -> np.ndarray:
        """-log(1 - h) of `rows`, h their daily churn probability: risk over RISK_DAYS, times any backfire."""
        risk = np.clip(self.base_risk[rows] * self.hazard_scale[rows], 0.0, 1.0)
        with np.errstate(divide="ignore"):
            return -np.log1p(-risk) / RISK_DAYS

    def _churn_days(self, rows: np.ndarray) -> np.ndarray:
        """Churn day of `rows`: the whole days of their churn time (an exponential clock at their hazard from a
        fixed uniform, so P(churn day = t) = (1 - h)^t h)."""
        churn = np.floor(self.churn_time[rows])
        return np.where(np.isfinite(churn), np.minimum(churn, 10**6), 10**6).astype(np.int64)

    def _raise_hazard(self, rows: np.ndarray) -> None:
        """An unaccepted message raises the hazard of `rows` by their backfire from today on: the time left on each
        clock shrinks by old / new hazard (memoryless, so P(churn within RISK_DAYS | alive today) becomes the raised
        risk), and the churn day can only come earlier (common random numbers). Raising it from day 0 instead, as
        an earlier version did, made a late message push customers several times more than its expected value says."""
        old = self._daily_hazard(rows)
        self.hazard_scale[rows] *= 1.0 + self.backfire[rows]
        new = self._daily_hazard(rows)
        # old / new in [0, 1]: 1 where nothing changed (both 0), 0 where the risk reached 1 (new infinite)
        ratio = np.divide(old, new, out=np.ones_like(old), where=(new > 0) & np.isfinite(new) & np.isfinite(old))
        ratio[np.isinf(new)] = 0.0
        left = np.maximum(self.churn_time[rows] - self.t, 0.0)
        self.churn_time[rows] = np.where(np.isfinite(left), self.t + left * ratio, self.churn_time[rows])
        self.churn_day[rows] = np.minimum(self.churn_day[rows], self._churn_days(rows))

    def _load_history(self, ids: np.ndarray, day: np.ndarray, accepted: np.ndarray) -> None:
        """Contact-day slots (most recent first), totals and last outcome from seeded contact_history rows."""
        row = pd.Index(self.ids).get_indexer(ids)
        order = np.lexsort((-day, row))  # by customer, most recent first
        row, day, accepted = row[order], day[order], accepted[order]
        rank = np.arange(len(row)) - np.searchsorted(row, row)  # 0 = most recent contact of that customer
        self.contact_days = np.full((len(self.ids), HISTORY_SLOTS), _EMPTY, dtype=np.int64)
        keep = rank < HISTORY_SLOTS
        self.contact_days[row[keep], rank[keep]] = day[keep]
        self.total = np.bincount(row, minlength=len(self.ids)).astype(np.int64)
        self.outcome = np.full(len(self.ids), OUTCOMES.index("nonexistent"))
        first = rank == 0
        self.outcome[row[first]] = np.where(accepted[first], OUTCOMES.index("success"), OUTCOMES.index("failure"))

    # state

    @property
    def today(self) -> dt.date:
        return self.start + dt.timedelta(days=self.t)

    @property
    def done(self) -> bool:
        return self.t >= self.horizon

    def risk(self) -> np.ndarray:
        return np.where(self.secured, 0.0, self.base_risk)

    def pending(self) -> np.ndarray:
        """True where a follow-up is scheduled for today or later."""
        return self.followup_day >= self.t

    def contacts_in_window(self) -> np.ndarray:
        """Messages sent in the fatigue window, plus a pending follow-up (the ledger counts it from its plan)."""
        return (self.contact_days > self.t - self.cfg.fatigue_window_days).sum(axis=1) + self.pending()

    def days_since_contact(self) -> np.ndarray:
        """Days to the nearest message, sent or pending: a pending follow-up keeps its cooldown around it."""
        last = self.contact_days[:, 0]
        since = np.where(last == _EMPTY, NEVER, self.t - last)
        return np.where(self.pending(), np.minimum(since, self.followup_day - self.t), since)

    def candidates(self) -> np.ndarray:
        """Rows that reach a decision today: alive, not suppressed, not in the holdout, never accepted an offer."""
        return np.flatnonzero(self.alive & ~self.suppressed & ~self.holdout & ~self.accepted)

    def accept_probs(self, rows: np.ndarray, levels: np.ndarray | None = None) -> np.ndarray:
        """Today's P(accept) of `rows` at every level (n, 4), or at `levels` (n,)."""
        lv = np.arange(rules.LEVELS)[None, :] if levels is None else levels
        col = (lambda a: a[:, None]) if levels is None else (lambda a: a)
        window = self.contacts_in_window()[rows]
        if self.world.history:
            history = window + 1, self.days_since_contact()[rows], self.total[rows], self.outcome[rows]
        else:  # as if never contacted: the bank data's self-selection on history is not causal here
            n = len(rows)
            history = (np.ones(n, np.int64), np.full(n, NEVER), np.zeros(n, np.int64),
                       np.full(n, OUTCOMES.index("nonexistent")))
        p = self.table(self.date_code, col(self.senior[rows]), col(self.phone[rows]), lv, *(col(h) for h in history))
        return p * col(self.world.fatigue ** window)

    def offer_costs(self, rows: np.ndarray, accept: np.ndarray) -> np.ndarray:
        """(n, 4) what each offer to `rows` commits (discount and both messages), inf where the plan's model expects
        it to earn nothing: the costs the daily rollout gives the sampler (`rules.worth_making`)."""
        value, cost = self.value[rows], self.message_cost[rows]
        ev = rules.offer_values(accept, value, self.risk()[rows], cost, self.cfg)
        return rules.worth_making(rules.committed_costs(value, cost, self.cfg), ev)

    def day_frame(self) -> pd.DataFrame:
        """Today's alive customers who have not accepted an offer, as the decide stage receives them (index =
        simulator rows). A customer who accepted is done with: no decider, rule or policy, sees them again."""
        rows = np.flatnonzero(self.alive & ~self.accepted)
        accept = self.accept_probs(rows)
        return pd.DataFrame({
            "customer_id": self.ids[rows], "customer_value": self.value[rows], "churn_risk": self.risk()[rows],
            "channel": self.channel[rows],
            **{f"accept_prob_{k}": accept[:, k] for k in range(rules.LEVELS)},
            "suppressed": self.suppressed[rows], "days_since_contact": self.days_since_contact()[rows],
            "contacts_in_window": self.contacts_in_window()[rows], "total_contacts": self.total[rows],
            "last_outcome": np.asarray(OUTCOMES)[self.outcome[rows]],
        }, index=rows)

    # transitions

    def _earn(self, rows, level, accept, u, u_save) -> Outcome:
        """Outcome of a message with offer `level` to `rows`: acceptance probability `accept`, uniforms `u` (accept)
        and `u_save` (an accepted offer keeps a would-be churner); see the module docstring."""
        n = len(self.ids)
        value, risk, pct, cost = self.value[rows], self.risk()[rows], self.pcts[level], self.message_cost[rows]
        accepted = u < accept
        saved = accepted & (u_save < self.efficacy[level])
        # a secured customer was already kept: accepting again retains nothing more
        would_churn = ~self.secured[rows] & (self.churn_day[rows] <= self.t + RISK_DAYS - 1)
        # an unaccepted message raises the hazard by the backfire: the churn day can only come earlier
        pushed = rows[~accepted & (self.backfire[rows] > 0) & ~self.secured[rows]]
        self._raise_hazard(pushed)
        pushed_in = ~accepted & ~would_churn & ~self.secured[rows] & (self.churn_day[rows] <= self.t + RISK_DAYS - 1)
        out = Outcome(*(np.zeros(n) for _ in range(2)), *(np.zeros(n, dtype=bool) for _ in range(2)), np.zeros(n))
        lift = rules.churn_lift(risk, accept, self.efficacy[level], self.backfire[rows])
        out.expected[rows] = value * (lift - accept * pct) - cost
        out.paid[rows] = np.where(accepted, value * pct, 0.0) + cost
        out.realized[rows] = value * ((saved & would_churn).astype(float) - pushed_in) - out.paid[rows]
        out.accepted[rows], out.retained[rows] = accepted, saved & would_churn
        self.secured[rows[saved]] = True
        self.accepted[rows[accepted]] = True
        self.outcome[rows] = np.where(accepted, OUTCOMES.index("success"), OUTCOMES.index("failure"))
        return out

    def contact(self, rows: np.ndarray, level: np.ndarray, delay: np.ndarray) -> Outcome:
        """Today's contacts: offers accepted (or not) today, history written, follow-ups scheduled (delay in days)."""
        rows, level, delay = np.asarray(rows), np.asarray(level), np.asarray(delay)
        out = self._earn(rows, level, self.accept_probs(rows, level), self.u_contact[self.t, rows],
                         self.u_save[0, self.t, rows])
        self._record(rows)
        waiting = ~out.accepted[rows] & (delay > 0)
        self.followup_day[rows] = np.where(waiting, self.t + delay, -1)
        self.followup_level[rows] = level
        return out

    def advance(self) -> tuple[Outcome, np.ndarray]:
        """End the day: churn, then the next day's follow-ups (none past the horizon). Returns them and who churned."""
        churned = self.alive & ~self.secured & (self.churn_day <= self.t)
        self.alive &= ~churned
        self.t += 1
        due = np.flatnonzero(self.alive & ~self.accepted & (self.followup_day == self.t) & (self.t < self.horizon))
        level = self.followup_level[due]
        self.followup_day[due] = -1  # sent now: no longer pending, so pdays reads the days since the first message
        out = self._earn(due, level, self.accept_probs(due, level), self.u_followup[self.t, due],
                         self.u_save[1, self.t, due])
        self._record(due)
        return out, churned

    def _record(self, rows: np.ndarray) -> None:
        """A message sent today to `rows`: the newest contact day, one more contact. Counts the messages, and the
        ones that break a promise (inside the cooldown of the previous message, or over the cap in the window)."""
        last = self.contact_days[rows, 0]
        self.message_breaks += int(((last != _EMPTY) & (self.t - last < self.cfg.cooldown_days)).sum())
        self.contact_days[rows] = np.concatenate([np.full((len(rows), 1), self.t), self.contact_days[rows, :-1]], 1)
        window = (self.contact_days[rows] > self.t - self.cfg.fatigue_window_days).sum(axis=1)
        self.message_breaks += int((window > self.cfg.fatigue_cap).sum())
        self.messages += len(rows)
        self.total[rows] += 1
