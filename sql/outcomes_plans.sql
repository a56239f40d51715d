-- Every row of the published plans in [start, end] with the customer facts the simulated decisions need.
-- grain: one row per plan_date x customer; key: plan_date, customer_id
-- reads: contact_plan (partitions start..end), customers (same snapshots)
-- params: start DATE, end DATE
SELECT p.plan_date, p.customer_id, p.churn_risk, p.decision_reason, c.customer_value, c.senior_citizen, c.channel
FROM `{project}.{dataset}.contact_plan` AS p
JOIN `{project}.{dataset}.customers` AS c ON c.customer_id = p.customer_id AND c.snapshot_date = p.plan_date
WHERE p.plan_date BETWEEN @start AND @end
ORDER BY p.plan_date, p.customer_id
