"""Off-policy evaluation: the value of a candidate policy from the decisions another (stochastic) policy logged.

One row per logged decision: `reward`, `propensity` (behaviour probability of the joint action taken, after the
hard-rule masks), `target_propensity` (the candidate's probability of that same action under the same masks) and,
for the doubly robust estimator, `q_logged` (reward model at the action taken) and `q_target` (the reward model's
expectation under the candidate, sum_a pi_e(a|x) q(x, a)). Value = mean reward per candidate decision.

Open Bandit Pipeline is not installed (it pins older numpy/pandas than the project's), so IPS, SNIPS and DR are
written here from their definitions; the estimators are pure numpy. `simulate_logs` produces such rows, and the
candidate's simulated true value, from the Simulator; `logged_data` reads them from contact_plan/contact_history.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from retention import plan
from retention.config import Config
from retention.env import BUDGET, Simulator, candidate_order, observe
from retention.policy import BLOCK, Policy, roll

N_BOOT = 500
ESTIMATORS = ("ips", "snips", "dr")


# estimators


def ips(reward: np.ndarray, w: np.ndarray) -> float:
    """Inverse propensity scoring: V = (1/n) sum_i w_i r_i, w_i = pi_e(a_i|x_i) / pi_b(a_i|x_i)."""
    return float(np.mean(w * reward))


def snips(reward: np.ndarray, w: np.ndarray) -> float:
    """Self-normalised IPS: V = sum_i w_i r_i / sum_i w_i (0 when no logged action has target probability)."""
    total = w.sum()
    return float((w * reward).sum() / total) if total > 0 else 0.0


def doubly_robust(reward: np.ndarray, w: np.ndarray, q_logged: np.ndarray, q_target: np.ndarray) -> float:
    """Doubly robust: V = (1/n) sum_i [ q_target_i + w_i (r_i - q(x_i, a_i)) ], q_target_i = E_{a~pi_e} q(x_i, a)."""
    return float(np.mean(q_target + w * (reward - q_logged)))


def effective_sample_size(w: np.ndarray) -> float:
    """(sum w)^2 / sum w^2: n when every weight is equal, 1 when one decision carries all the weight."""
    sq = float((w * w).sum())
    return float(w.sum()) ** 2 / sq if sq > 0 else 0.0


def _all(reward, w, q_logged, q_target) -> np.ndarray:
    return np.array([ips(reward, w), snips(reward, w), doubly_robust(reward, w, q_logged, q_target)])


def estimate(logs: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """IPS, SNIPS and DR of the target policy with percentile bootstrap intervals (decisions resampled, seeded).

    Without q_logged/q_target columns the reward model is 0 and DR equals IPS. Columns: estimator, value, lo, hi,
    se (bootstrap standard deviation), ess, n.
    """
    reward = logs["reward"].to_numpy(dtype=np.float64)
    w = logs["target_propensity"].to_numpy(dtype=np.float64) / logs["propensity"].to_numpy(dtype=np.float64)
    zeros = np.zeros(len(logs))
    q_logged = logs["q_logged"].to_numpy(dtype=np.float64) if "q_logged" in logs else zeros
    q_target = logs["q_target"].to_numpy(dtype=np.float64) if "q_target" in logs else zeros
    rng, n = np.random.default_rng(seed), len(reward)
    boot = np.empty((n_boot, len(ESTIMATORS)))
    for b in range(n_boot):
        i = rng.integers(0, n, n)
        boot[b] = _all(reward[i], w[i], q_logged[i], q_target[i])
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    return pd.DataFrame({"estimator": ESTIMATORS, "value": _all(reward, w, q_logged, q_target), "lo": lo, "hi": hi,
                         "se": boot.std(axis=0, ddof=1), "ess": effective_sample_size(w), "n": n})


# the target policy's probability of a logged action


def action_logp(logits, contact_ok: np.ndarray, affordable: np.ndarray, contact: np.ndarray, level: np.ndarray,
                delay: np.ndarray) -> np.ndarray:
    """log pi(action | state, masks) as env._decide_block computes it: contact, then offer among legal ones, delay.

    contact_ok[:, 1]: a contact was legal (eligible and some offer fits); affordable (n, 4): offers that fit.
    A no-contact has the probability of not contacting (1 when contacting was illegal).
    """
    lc, lo, ld = (np.asarray(x, dtype=np.float64) for x in logits)
    can, rows = contact_ok[:, 1].astype(bool), np.arange(len(lc))
    margin = lc[:, 1] - lc[:, 0]
    logp = np.where(contact, -np.logaddexp(0.0, -margin), np.where(can, -np.logaddexp(0.0, margin), 0.0))
    z = np.where(affordable & can[:, None], lo, -np.inf)
    top = np.where(can, z.max(axis=1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        offer = z - top[:, None] - np.log(np.exp(z - top[:, None]).sum(axis=1, keepdims=True))
        dl = ld - ld.max(axis=1, keepdims=True)
        dl = dl - np.log(np.exp(dl).sum(axis=1, keepdims=True))
    return logp + np.where(contact, offer[rows, level] + dl[rows, delay], 0.0)


def reward_model(logits, contact_ok: np.ndarray, affordable: np.ndarray, ev: np.ndarray, contact: np.ndarray,
                 level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q_logged, q_target) from the champions' expected values ev (n, 4) (plan.expected_values; follow-ups ignored).

    q(x, no contact) = 0 and q(x, contact at k, any delay) = ev_k, so E_{pi_e} q = P(contact) sum_k pi_e(k) ev_k.
    """
    lc, lo, _ = (np.asarray(x, dtype=np.float64) for x in logits)
    can = contact_ok[:, 1].astype(bool)
    p_contact = np.where(can, 1.0 / (1.0 + np.exp(-(lc[:, 1] - lc[:, 0]))), 0.0)
    z = np.where(affordable & can[:, None], lo, -np.inf)
    with np.errstate(invalid="ignore"):
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p = np.where(can[:, None], p / p.sum(axis=1, keepdims=True), 0.0)
    q_target = p_contact * (p * np.where(np.isfinite(ev), ev, 0.0)).sum(axis=1)
    return np.where(contact, ev[np.arange(len(ev)), level], 0.0), q_target


def _target_columns(target: Policy, obs, contact_ok, affordable, ev, contact, level, delay) -> dict:
    """target_propensity, q_logged and q_target of logged decisions (target evaluated on the logged states)."""
    logits = [np.concatenate(x) for x in zip(*(target.logits(obs[s:s + BLOCK]) for s in range(0, len(obs), BLOCK)))]
    q_logged, q_target = reward_model(logits, contact_ok, affordable, ev, contact, level)
    return {"target_propensity": np.exp(action_logp(logits, contact_ok, affordable, contact, level, delay)),
            "q_logged": q_logged, "q_target": q_target}


# logs from the simulator


def _episode(sim: Simulator, behaviour: Policy, seed: int, start: dt.date, target: Policy | None) -> pd.DataFrame:
    """One episode run by `behaviour`: one row per candidate decision, reward = its net revenue retained
    (the contact's outcome plus its follow-up's), and the target's columns when a target is given."""
    sim.reset(seed, start)
    parts, owner, extra, offset = [], np.full(len(sim.ids), -1), [], 0
    while not sim.done:
        day = sim.day_frame()
        r = roll(day, sim.cfg, behaviour, sim.today)
        d, rows = r.decisions, day.index.to_numpy()[r.queue]
        out = sim.contact(rows[d.contact], d.level[d.contact], d.delay[d.contact])
        owner[rows[d.contact]] = offset + np.flatnonzero(d.contact)
        follow, _ = sim.advance()
        done = np.flatnonzero(follow.accepted)  # a follow-up's revenue belongs to the decision that scheduled it
        extra.append((owner[done], follow.realized[done]))
        cols = {"day": sim.t - 1, "customer_id": sim.ids[rows], "contact": d.contact, "offer_level": d.level,
                "followup_days": d.delay, "propensity": np.exp(d.logp),
                "reward": np.where(d.contact, out.realized[rows], 0.0)}
        if target is not None:
            ev = plan.expected_values(day.iloc[r.queue], sim.cfg)
            cols |= _target_columns(target, d.obs, d.contact_ok, d.affordable, ev, d.contact, d.level, d.delay)
        parts.append(pd.DataFrame(cols))
        offset += len(rows)
    logs = pd.concat(parts, ignore_index=True)
    reward = logs["reward"].to_numpy(dtype=np.float64, copy=True)
    for idx, amount in extra:
        np.add.at(reward, idx, amount)
    return logs.assign(reward=reward, seed=seed)


def simulate_logs(sim: Simulator, behaviour: Policy, target: Policy, seeds: list[int],
                  start: dt.date) -> tuple[pd.DataFrame, float]:
    """(logs of `behaviour` with the target's columns, the target's simulated value per decision) on the same seeds.

    The truth runs the target itself in the simulator on the same (seed, start) episodes: mean net revenue
    retained per candidate decision, the quantity the estimators estimate.
    """
    logs = pd.concat([_episode(sim, behaviour, s, start, target) for s in seeds], ignore_index=True)
    truth = pd.concat([_episode(sim, target, s, start, None) for s in seeds], ignore_index=True)
    return logs, float(truth["reward"].mean())


# logs from BigQuery


LOGGED_SQL = """\
WITH plans AS (
  SELECT p.plan_date, p.customer_id, p.policy_model, p.churn_risk, p.accept_prob_0, p.accept_prob_1,
         p.accept_prob_2, p.accept_prob_3, p.contact, p.offer_level, p.offer_pct, p.followup_days, p.offer_cost,
         p.propensity, p.decision_reason, c.customer_value
  FROM `{plan}` AS p
  JOIN `{customers}` AS c ON c.customer_id = p.customer_id AND c.snapshot_date = p.plan_date
  WHERE p.plan_date BETWEEN @start AND @end AND NOT p.holdout AND p.decision_reason != 'suppressed'
),
prior AS (
  SELECT p.plan_date, p.customer_id,
         COUNTIF(h.contact_date > DATE_SUB(p.plan_date, INTERVAL @window DAY)) AS contacts_in_window,
         COALESCE(DATE_DIFF(p.plan_date, MAX(h.contact_date), DAY), 999) AS days_since_contact
  FROM plans AS p
  LEFT JOIN `{history}` AS h ON h.customer_id = p.customer_id AND h.contact_date < p.plan_date
  GROUP BY p.plan_date, p.customer_id
)
SELECT plans.*, prior.contacts_in_window, prior.days_since_contact, o.accepted, o.churned
FROM plans
JOIN prior ON prior.plan_date = plans.plan_date AND prior.customer_id = plans.customer_id
LEFT JOIN `{history}` AS o ON o.customer_id = plans.customer_id AND o.plan_date = plans.plan_date
ORDER BY plans.plan_date, plans.customer_id"""


def logged_data(client, cfg: Config, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Candidate rows of contact_plan in [start, end] with their history state and outcome (contact_history).

    reward = accepted x customer_value x (churn_risk - offer_pct) - channel_cost for contacts, 0 otherwise: the
    acceptance is observed, the churn it prevents is the calibrated expectation (the counterfactual is unobserved).
    """
    from retention import bq

    sql = LOGGED_SQL.format(plan=cfg.table("contact_plan"), customers=cfg.table("customers"),
                            history=cfg.table("contact_history"))
    rows = bq.query(client, cfg, sql, start=start, end=end, window=int(cfg.fatigue_window_days))
    contact = rows["contact"].to_numpy(dtype=bool)
    accepted = rows["accepted"].fillna(False).to_numpy(dtype=bool) & contact
    value, pct = rows["customer_value"].to_numpy(dtype=np.float64), rows["offer_pct"].fillna(0.0).to_numpy(np.float64)
    reward = np.where(accepted, value * (rows["churn_risk"].to_numpy(dtype=np.float64) - pct), 0.0)
    return rows.assign(reward=reward - cfg.channel_cost * contact)


def logged_decisions(rows: pd.DataFrame, cfg: Config, target: Policy) -> pd.DataFrame:
    """`rows` (logged_data) with the target's columns, each day's states and masks rebuilt as the rollout saw them.

    The queue is the rollout's order (revenue at stake, ties by customer_id as the extract sorts); the budget left
    at a row's turn is the budget less the committed cost of the contacts before it, the state's budget share is
    that at the start of the row's block of BLOCK rows.
    """
    parts = []
    for _, day in rows.groupby("plan_date", sort=True):
        day = day.sort_values("customer_id").reset_index(drop=True)
        risk, value = day["churn_risk"].to_numpy(np.float64), day["customer_value"].to_numpy(np.float64)
        day = day.iloc[candidate_order(risk, value)].reset_index(drop=True)
        accept = day[[f"accept_prob_{k}" for k in range(plan.LEVELS)]].to_numpy(np.float64)
        obs = observe(day["churn_risk"].to_numpy(np.float64), accept, day["days_since_contact"].to_numpy(),
                      day["contacts_in_window"].to_numpy(), cfg)
        contact = day["contact"].to_numpy(dtype=bool)
        spent = np.cumsum(np.where(contact, day["offer_cost"].fillna(0.0).to_numpy(np.float64), 0.0))
        before = cfg.daily_budget - np.concatenate([[0.0], spent[:-1]])
        starts = (np.arange(len(day)) // BLOCK) * BLOCK
        obs[:, BUDGET] = before[starts] / cfg.daily_budget if cfg.daily_budget > 0 else 0.0
        affordable = plan.offer_costs(day, cfg) <= before[:, None] + plan.BUDGET_TOL
        eligible = ~day["decision_reason"].isin(["cooldown", "fatigue"]).to_numpy()
        contact_ok = np.stack([np.ones(len(day), bool), eligible & affordable.any(axis=1)], axis=1)
        level = day["offer_level"].fillna(0).to_numpy(np.int64)
        delay = day["followup_days"].fillna(0).to_numpy(np.int64)
        parts.append(day.assign(**_target_columns(target, obs, contact_ok, affordable,
                                                  plan.expected_values(day, cfg), contact, level, delay)))
    return pd.concat(parts, ignore_index=True)
