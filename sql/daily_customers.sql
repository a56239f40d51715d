-- The day's customers to plan, with what contact rules and scoring need from the contact ledger.
-- grain: one row per customer of the ds snapshot; key: customer_id
-- reads: customers (partition snapshot_date = ds), contact_history (contact_date < ds), contact_plan (partitions in
--   [ds - lookback, ds)), online_decisions (decision_date in [ds - lookback, ds]), suppression (since <= ds)
-- params: ds DATE, window INT64 (fatigue window in days), lookback INT64 (oldest plan whose messages can still count)
--
-- The contact ledger: every message the send system recorded (contact_history) plus every message of earlier
-- published plans and of the online service's decisions (up to ds) it has not recorded yet: a contact at its send_at and its follow-up followup_days later, pending
-- ones included. A message is identified by (plan_date, customer_id, sequence: 0 the contact, 1 the follow-up), so
-- a recorded one is never counted twice. contacts_in_window counts the window's messages and every pending one;
-- days_since_contact is the distance to the nearest message, sent or pending, so a scheduled follow-up keeps its
-- cooldown around it.
WITH planned AS (
  SELECT plan_date, customer_id, 0 AS sequence, DATE(send_at) AS contact_date
  FROM `{project}.{dataset}.contact_plan`
  WHERE plan_date < @ds AND plan_date >= DATE_SUB(@ds, INTERVAL @lookback DAY) AND contact
  UNION ALL
  SELECT plan_date, customer_id, 1 AS sequence, DATE(TIMESTAMP_ADD(send_at, INTERVAL followup_days DAY)) AS contact_date
  FROM `{project}.{dataset}.contact_plan`
  WHERE plan_date < @ds AND plan_date >= DATE_SUB(@ds, INTERVAL @lookback DAY) AND contact AND followup_days > 0
  UNION ALL
  -- decisions of the online service (retention serve): a save-desk offer is a contact like any other
  SELECT decision_date AS plan_date, customer_id, 0 AS sequence, DATE(decided_at) AS contact_date
  FROM `{project}.{dataset}.online_decisions`
  WHERE decision_date <= @ds AND decision_date >= DATE_SUB(@ds, INTERVAL @lookback DAY) AND contact
  UNION ALL
  SELECT decision_date AS plan_date, customer_id, 1 AS sequence,
         DATE(TIMESTAMP_ADD(decided_at, INTERVAL followup_days DAY)) AS contact_date
  FROM `{project}.{dataset}.online_decisions`
  WHERE decision_date <= @ds AND decision_date >= DATE_SUB(@ds, INTERVAL @lookback DAY) AND contact
    AND followup_days > 0
),
recorded AS (
  SELECT customer_id, contact_date, plan_date, COALESCE(sequence, 0) AS sequence
  FROM `{project}.{dataset}.contact_history`
  WHERE contact_date < @ds
),
ledger AS (
  SELECT customer_id, contact_date FROM recorded
  UNION ALL
  SELECT p.customer_id, p.contact_date
  FROM planned AS p
  LEFT JOIN recorded AS r
    ON r.plan_date = p.plan_date AND r.customer_id = p.customer_id AND r.sequence = p.sequence
  WHERE r.customer_id IS NULL
),
history AS (
  SELECT
    customer_id,
    COUNTIF(contact_date > DATE_SUB(@ds, INTERVAL @window DAY)) AS contacts_in_window,
    MIN(ABS(DATE_DIFF(@ds, contact_date, DAY))) AS days_since_contact,
    COUNTIF(contact_date < @ds) AS total_contacts
  FROM ledger
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
    WHEN l.customer_id IS NULL THEN 'nonexistent'
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
