-- Outcomes of the customers of the plans in [start, end] (everyone not suppressed: sql/outcomes_eligible.sql), each
-- with its decision and customer facts.
-- A full join, so that a plan row without an outcome (in_plan, not has_outcome), an outcome without a
-- plan row (has_outcome, not in_plan) and a duplicated outcome (two rows of one key) reach the checks.
-- grain: one row per outcomes row or plan row without one; key: plan_date, customer_id (unique when sound)
-- reads: outcomes (partitions start..end), contact_plan (partitions start..end), customers (same snapshots)
-- params: start DATE, end DATE
WITH o AS (
  SELECT plan_date, customer_id, holdout, treated, decision_reason, offer_level, churned, accepted, horizon_days
  FROM `{project}.{dataset}.outcomes`
  WHERE plan_date BETWEEN @start AND @end
), p AS (
  SELECT p.plan_date, p.customer_id, p.contact, p.holdout, p.churn_risk, p.offer_pct, p.followup_days
  FROM `{project}.{dataset}.contact_plan` AS p
  WHERE p.plan_date BETWEEN @start AND @end
    AND p.decision_reason != 'suppressed'
)
SELECT COALESCE(o.plan_date, p.plan_date) AS plan_date, COALESCE(o.customer_id, p.customer_id) AS customer_id,
       o.customer_id IS NOT NULL AS has_outcome, p.customer_id IS NOT NULL AS in_plan,
       o.holdout, o.treated, o.decision_reason, o.offer_level, o.churned, o.accepted, o.horizon_days,
       p.contact, p.holdout AS plan_holdout, p.churn_risk, p.offer_pct, p.followup_days,
       c.customer_value, c.channel
FROM o
FULL OUTER JOIN p ON p.plan_date = o.plan_date AND p.customer_id = o.customer_id
LEFT JOIN `{project}.{dataset}.customers` AS c
  ON c.customer_id = COALESCE(o.customer_id, p.customer_id) AND c.snapshot_date = COALESCE(o.plan_date, p.plan_date)
ORDER BY plan_date, customer_id
