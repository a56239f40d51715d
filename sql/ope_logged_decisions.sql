-- Logged decisions for off-policy evaluation: each candidate of contact_plan in [start, end] with the history state
-- it was decided in (recomputed from contact_history as it is now) and its observed outcome.
-- grain: one row per plan_date x candidate customer (not holdout, not suppressed); key: plan_date, customer_id
-- reads: contact_plan (partitions start..end), customers (same snapshots), contact_history
-- params: start DATE, end DATE, window INT64 (fatigue window in days)
WITH plans AS (
  SELECT p.plan_date, p.customer_id, p.policy_model, p.churn_risk, p.accept_prob_0, p.accept_prob_1,
         p.accept_prob_2, p.accept_prob_3, p.contact, p.offer_level, p.offer_pct, p.followup_days,
         p.propensity, p.decision_reason, c.customer_value, c.channel
  FROM `{project}.{dataset}.contact_plan` AS p
  JOIN `{project}.{dataset}.customers` AS c ON c.customer_id = p.customer_id AND c.snapshot_date = p.plan_date
  WHERE p.plan_date BETWEEN @start AND @end AND NOT p.holdout AND p.decision_reason != 'suppressed'
),
prior AS (
  SELECT p.plan_date, p.customer_id,
         COUNTIF(h.contact_date > DATE_SUB(p.plan_date, INTERVAL @window DAY)) AS contacts_in_window,
         COALESCE(DATE_DIFF(p.plan_date, MAX(h.contact_date), DAY), 999) AS days_since_contact
  FROM plans AS p
  LEFT JOIN `{project}.{dataset}.contact_history` AS h ON h.customer_id = p.customer_id AND h.contact_date < p.plan_date
  GROUP BY p.plan_date, p.customer_id
)
SELECT plans.*, prior.contacts_in_window, prior.days_since_contact, o.accepted, o.churned
FROM plans
JOIN prior ON prior.plan_date = plans.plan_date AND prior.customer_id = plans.customer_id
LEFT JOIN `{project}.{dataset}.contact_history` AS o ON o.customer_id = plans.customer_id AND o.plan_date = plans.plan_date
ORDER BY plans.plan_date, plans.customer_id
