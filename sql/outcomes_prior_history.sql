-- contact_history before the window, for the customers planned in [start, end].
-- grain: one row per contact; key: customer_id, contact_date, plan_date
-- reads: contact_history (contact_date < start), contact_plan (partitions start..end)
-- params: start DATE, end DATE
SELECT h.* FROM `{project}.{dataset}.contact_history` AS h
WHERE h.contact_date < @start
  AND h.customer_id IN (SELECT customer_id FROM `{project}.{dataset}.contact_plan` WHERE plan_date BETWEEN @start AND @end)
