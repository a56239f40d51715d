"""Simulated outcomes of published plans, written to contact_history: the demo's stand-in for what customers did.

Each contacted row of contact_plan on plan_date D gets one contact_history row (contact_date = plan_date = D), drawn
with the Simulator's dynamics and constants (retention/simulation/simulator.py):
- churn: churn_risk is P(churn within RISK_DAYS); the churn day after D is drawn with the daily hazard
  1 - (1 - risk)^(1/RISK_DAYS);
- accepted: the offer is accepted on D with accept_prob_<offer_level>; if not, and the plan scheduled a follow-up
  d > 0 days later that the customer lives to see, the same offer is accepted then with the accept champion's
  probability for D + d (pdays d, campaign and previous counting the contact, poutcome failure; contacts leaving the
  fatigue window in those d days are not subtracted). `accepted` is either one: the follow-up writes no row;
- churned: the churn day falls within RISK_DAYS of D, unless an accepted offer saved the customer (with the
  offer's efficacy, Config.offer_efficacy); a contact not accepted raises the risk by Config.contact_backfire.
Draws are uniforms keyed by (D, customer_id), independent of the decision's own noise, so a rerun writes the same
rows; `simulate_day` replaces exactly the (contact_date = D, plan_date = D) slice and never duplicates it. Run it
after each day's plan and before the next day's: the next extract reads these rows (cooldown, fatigue, history).

The `outcomes` table holds the same draws for every customer of D's plan who is not suppressed, the holdout included,
so the holdout can be compared with the rest (`retention impact`): the contacted get their contact_history outcome,
the others churn within HORIZON_DAYS with their churn_risk and the same churn uniform (no offer, no backfire).
Customers in cooldown or at the fatigue cap keep their row: only the policy's own contacts put anyone there, never
the holdout, so dropping them would select the policy arm by treatment. `simulate_day` replaces its plan_date = D
partition.

Unlike the Simulator, the warehouse keeps a churned or secured customer in the later snapshots (the customers table
is an input): outcomes are written, the population is left as loaded.

`replay_value` is a candidate policy's simulated truth over the same days: the candidate decides each day from the
same snapshots and seeded history, its own simulated outcomes feeding its later days, with the same draws.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from retention.infra import bq
from retention.infra.artifacts import promoted_at
from retention import hashing
from retention.deciding.decide import decide_plan
from retention.deciding import rules
from retention.scoring.accept import AcceptModel
from retention.config import Config
from retention.simulation.simulator import RISK_DAYS, AcceptTable, date_code, history_features
from retention.deciding.sampler import NOISE
from retention.scoring.features import OUTCOMES
from retention.simulation.ope import reward
from retention.deciding.policy import Policy
from retention.hashing import decision_noise

HORIZON_DAYS = RISK_DAYS
"""Days after plan_date over which `outcomes` counts a churn (churn_risk's own horizon)."""
SALT = "outcome|"
"""Prefix hashed with customer_id: outcome draws never reuse the decision's uniforms."""


# draws


def outcome_noise(customer_ids, ds: dt.date) -> np.ndarray:
    """(n, 4) uniforms keyed by (ds, customer_id): churn day, acceptance on ds, acceptance at the follow-up, and
    whether an accepted offer saves the customer."""
    hashes = hashing.stable_hash(SALT + pd.Series(customer_ids, dtype="str"))
    return decision_noise(hashes, ds, NOISE)[:, :4]


def followup_accept(rows: pd.DataFrame, table: AcceptTable, ds: dt.date) -> np.ndarray:
    """P(accept) of each row's offer repeated followup_days after ds (a contact that failed on ds)."""
    delay = rows["followup_days"].to_numpy(dtype=np.int64)
    # followup_days is a day count (cooldown_days + choice - 1, rules.followup_days), not a choice below DELAYS
    code = np.array([date_code(ds + dt.timedelta(days=d)) for d in range(int(delay.max(initial=0)) + 1)])[delay]
    # as Simulator.accept_probs on the follow-up day: campaign = contacts in the window (the contact among them) + 1
    return table(code, rows["senior_citizen"].to_numpy(dtype=bool).astype(np.int64),
                 rows["channel"].eq("phone").to_numpy(dtype=bool).astype(np.int64),
                 rows["offer_level"].to_numpy(dtype=np.int64), rows["contacts_in_window"].to_numpy(np.int64) + 2,
                 delay, rows["total_contacts"].to_numpy(np.int64) + 1,
                 np.full(len(rows), OUTCOMES.index("failure")))


def draw(rows: pd.DataFrame, table: AcceptTable, ds: dt.date, cfg: Config) -> pd.DataFrame:
    """contact_history rows for the contacted `rows` of ds's plan (OUTCOME_SQL's columns), see the module docstring."""
    u = outcome_noise(rows["customer_id"], ds)
    level = rows["offer_level"].to_numpy(dtype=np.int64)
    accept = rows[[f"accept_prob_{k}" for k in range(rules.LEVELS)]].to_numpy(np.float64)[np.arange(len(rows)), level]
    delay = rows["followup_days"].fillna(0).to_numpy(dtype=np.int64)
    alive = _churn_days(u[:, 0], rows["churn_risk"].to_numpy(dtype=np.float64)) >= delay  # on the follow-up day
    waiting = (u[:, 1] >= accept) & (delay > 0) & alive
    accepted = u[:, 1] < accept
    if waiting.any():
        accepted[waiting] = u[waiting, 2] < followup_accept(rows[waiting].assign(followup_days=delay[waiting]),
                                                           table, ds)
    saved = accepted & (u[:, 3] < np.asarray(cfg.offer_efficacy)[level])
    # a contact not accepted raises the risk by the backfire (the plan's model of it, Config.contact_backfire)
    raised = np.where(accepted, 1.0, 1.0 + cfg.contact_backfire)
    churn_day = _churn_days(u[:, 0], rows["churn_risk"].to_numpy(dtype=np.float64) * raised)
    return pd.DataFrame({"contact_date": [ds] * len(rows), "customer_id": rows["customer_id"].to_numpy(),
                         "plan_date": [ds] * len(rows), "offer_level": level, "accepted": accepted,
                         "churned": ~saved & (churn_day < RISK_DAYS), "sequence": np.zeros(len(rows), np.int64)})


def _churn_days(u: np.ndarray, risk: np.ndarray) -> np.ndarray:
    """Days after ds to the churn, from uniforms `u` at the daily hazard 1 - (1 - risk)^(1/RISK_DAYS); inf at risk 0."""
    hazard = 1.0 - (1.0 - np.clip(risk, 0.0, 1.0)) ** (1.0 / RISK_DAYS)
    with np.errstate(divide="ignore"):
        return np.floor(np.log(u) / np.log1p(-hazard))


def everyone(eligible: pd.DataFrame, history: pd.DataFrame, ds: dt.date) -> pd.DataFrame:
    """`outcomes` rows of ds's customers not suppressed (`eligible`): the contacted's churn and acceptance from their
    `history` row, the others' churn drawn from churn_risk with the same churn uniform as `draw`."""
    u = outcome_noise(eligible["customer_id"], ds)[:, 0]
    churned = _churn_days(u, eligible["churn_risk"].to_numpy(dtype=np.float64)) < HORIZON_DAYS
    treated = eligible["contact"].to_numpy(dtype=bool)
    drawn = history.set_index("customer_id").loc[eligible.loc[treated, "customer_id"]]
    churned[treated] = drawn["churned"].to_numpy(dtype=bool)
    accepted = pd.array([None] * len(eligible), dtype="boolean")
    accepted[treated] = drawn["accepted"].to_numpy(dtype=bool)
    return pd.DataFrame({"plan_date": [ds] * len(eligible), "customer_id": eligible["customer_id"].to_numpy(),
                         "holdout": eligible["holdout"].to_numpy(dtype=bool), "treated": treated,
                         "decision_reason": eligible["decision_reason"].to_numpy(),
                         "offer_level": pd.array(eligible["offer_level"], dtype="Int64"), "churned": churned,
                         "accepted": accepted, "horizon_days": np.full(len(eligible), HORIZON_DAYS, np.int64)})


def simulate_day(client, cfg: Config, ds: dt.date, table: AcceptTable) -> pd.DataFrame:
    """Draw the outcomes of ds's published contacts and make them the (contact_date = ds, plan_date = ds) slice;
    the same draws for every customer not suppressed become the plan_date = ds partition of `outcomes`."""
    rows = bq.query(client, cfg, bq.sql_text("outcomes_contacted", cfg), ds=ds, window=int(cfg.fatigue_window_days))
    history = draw(rows, table, ds, cfg)
    bq.replace_partition(client, cfg, history, "contact_history", "contact_date", ds, extra_key={"plan_date": ds})
    eligible = bq.query(client, cfg, bq.sql_text("outcomes_eligible", cfg), ds=ds)
    client.create_table(bq.table_spec(cfg, "outcomes"), exists_ok=True, retry=bq.RETRY)
    bq.replace_partition(client, cfg, everyone(eligible, history, ds), "outcomes", "plan_date", ds)
    return history


def new_since_champion(client, cfg: Config, name: str) -> int:
    """Rows of `outcomes` from plans made on or after the day the champion of `name` was promoted (every row when
    there is none): what retention_retrain_uplift waits for."""
    since = promoted_at(cfg.artifacts, name)
    client.create_table(bq.table_spec(cfg, "outcomes"), exists_ok=True, retry=bq.RETRY)
    rows = bq.query(client, cfg, bq.sql_text("outcomes_new", cfg),
                    since=since.date() if since else dt.date(1970, 1, 1))
    return int(rows["outcomes"].iloc[0])


# the simulated truth of a candidate


def _day_frame(day: pd.DataFrame, history: pd.DataFrame, cfg: Config, ds: dt.date, accept: AcceptModel) -> pd.DataFrame:
    """The day's plan rows as the decide stage receives them, history features and acceptance from `history`."""
    none = pd.DataFrame({"customer_id": pd.Series([], dtype="str"), "since": pd.Series([], dtype=object)})
    day = history_features(day.reset_index(drop=True), history, none, ds, cfg.fatigue_window_days)
    day = day.assign(suppressed=day["decision_reason"].eq("suppressed").to_numpy(dtype=bool))
    return pd.concat([day, accept.predict_levels(day, ds)], axis=1)


def replay_value(client, cfg: Config, policy: Policy, table: AcceptTable, start: dt.date, end: dt.date) -> float:
    """`policy`'s net revenue retained per customer over [start, end], replayed on the logged days' snapshots.

    The days' customers, risk and suppressions are the logged plans'; the history starts as contact_history before
    `start` and grows with the replay's own simulated outcomes; acceptance is rescored from that history by the accept
    champion (`table.model`). With the policy that made the plans, the replay reproduces them and their outcomes.
    """
    plans = bq.query(client, cfg, bq.sql_text("outcomes_plans", cfg), start=start, end=end)
    history = bq.query(client, cfg, bq.sql_text("outcomes_prior_history", cfg), start=start, end=end)
    total, customers = 0.0, set()
    for ds, day in plans.groupby("plan_date", sort=True):
        ds = pd.Timestamp(ds).date()
        decided = decide_plan(_day_frame(day, history, cfg, ds, table.model), cfg, policy, ds)
        contact = decided["contact"].to_numpy(dtype=bool)
        drawn = draw(decided[contact].assign(offer_level=decided.loc[contact, "offer_level"].astype(np.int64)),
                     table, ds, cfg)
        accepted = np.zeros(len(decided), dtype=bool)
        accepted[contact] = drawn["accepted"].to_numpy(dtype=bool)
        candidate = ~decided["decision_reason"].isin(["holdout", "suppressed"]).to_numpy()
        r = reward(contact, accepted, decided["customer_value"], decided["churn_risk"],
                   decided["offer_level"].fillna(0).to_numpy(np.int64), rules.message_costs(decided, cfg), cfg)
        total += float(r[candidate].sum())
        customers |= set(decided.loc[candidate, "customer_id"])
        history = pd.concat([history, drawn], ignore_index=True)
    return total / len(customers)
