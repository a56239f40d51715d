-- The day's customers to plan, with what contact rules and scoring need from their history.
-- grain: one row per customer of the ds snapshot; key: customer_id
-- reads: customers (partition snapshot_date = ds), contact_history (contact_date < ds), suppression (since <= ds)
-- params: ds DATE, window INT64 (fatigue window in days)
WITH history AS (
  SELECT
    customer_id,
    COUNTIF(contact_date > DATE_SUB(@ds, INTERVAL @window DAY)) AS contacts_in_window,
    DATE_DIFF(@ds, MAX(contact_date), DAY) AS days_since_contact,
    COUNT(*) AS total_contacts
  FROM `{project}.{dataset}.contact_history`
  WHERE contact_date < @ds
  GROUP BY customer_id
),
last_contact AS (
  SELECT customer_id, accepted
  FROM `{project}.{dataset}.contact_history`
  WHERE contact_date < @ds
  QUALIFY ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY contact_date DESC, plan_date DESC) = 1
),
suppressed AS (
  SELECT DISTINCT customer_id
  FROM `{project}.{dataset}.suppression`
  WHERE since <= @ds
)
SELECT
  c.*,
  -- explicit INT64: the emulator's counts are wider integers, which a table read would carry as NUMERIC
  CAST(COALESCE(h.contacts_in_window, 0) AS INT64) AS contacts_in_window,
  CAST(COALESCE(h.days_since_contact, 999) AS INT64) AS days_since_contact,
  CAST(COALESCE(h.total_contacts, 0) AS INT64) AS total_contacts,
  CASE
    WHEN h.customer_id IS NULL THEN 'nonexistent'
    WHEN l.accepted THEN 'success'
    ELSE 'failure'
  END AS last_outcome,
  s.customer_id IS NOT NULL AS suppressed
FROM `{project}.{dataset}.customers` AS c
LEFT JOIN history AS h USING (customer_id)
LEFT JOIN last_contact AS l USING (customer_id)
LEFT JOIN suppressed AS s USING (customer_id)
WHERE c.snapshot_date = @ds
ORDER BY c.customer_id
