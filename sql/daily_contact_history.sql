-- The raw contact_history rows behind the day's history features, with what their suite (expectations/contact_history.json) checks.
-- grain: one row per contact_history row that daily_customers reads (contact_date < ds), plus every row dated after
--        the newest customers snapshot (a date from the future); key: customer_id, contact_date
-- reads: contact_history, customers (every snapshot: which customer_ids exist, and the newest snapshot_date)
-- params: ds DATE
WITH known AS (
  SELECT DISTINCT customer_id
  FROM `{project}.{dataset}.customers`
),
horizon AS (
  -- the data's own "today": backfilled days legitimately have history after ds, but never after the newest snapshot
  SELECT GREATEST(@ds, COALESCE(MAX(snapshot_date), @ds)) AS newest
  FROM `{project}.{dataset}.customers`
)
SELECT
  h.*,
  k.customer_id IS NOT NULL AS known_customer,
  h.contact_date > horizon.newest AS future_date
FROM `{project}.{dataset}.contact_history` AS h
CROSS JOIN horizon
LEFT JOIN known AS k ON k.customer_id = h.customer_id
WHERE h.contact_date < @ds OR h.contact_date > horizon.newest
ORDER BY h.customer_id, h.contact_date
