-- The suppression rows behind the day's `suppressed` flag, with what their suite (expectations/suppression.json) checks.
-- grain: one row per suppression row (the table holds the current opt-outs, small); key: customer_id
-- reads: suppression, customers (every snapshot: which customer_ids exist, and the newest snapshot_date)
-- params: ds DATE
WITH known AS (
  SELECT DISTINCT customer_id
  FROM `{project}.{dataset}.customers`
),
horizon AS (
  -- a suppression may start after a backfilled ds (it is simply not in force yet), but not after the newest snapshot
  SELECT GREATEST(@ds, COALESCE(MAX(snapshot_date), @ds)) AS newest
  FROM `{project}.{dataset}.customers`
)
SELECT
  s.*,
  k.customer_id IS NOT NULL AS known_customer,
  s.since > horizon.newest AS future_date
FROM `{project}.{dataset}.suppression` AS s
CROSS JOIN horizon
LEFT JOIN known AS k ON k.customer_id = s.customer_id
ORDER BY s.customer_id, s.since
