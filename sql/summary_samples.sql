-- Three messages of a day's plan (highest expected value first), for `retention summary`.
-- grain: one row per contacted customer; reads: contact_plan (partition ds); params: ds DATE
SELECT customer_id, offer_pct, generator, message, send_at
FROM `{project}.{dataset}.contact_plan`
WHERE plan_date = @ds AND contact
ORDER BY expected_value DESC, customer_id
LIMIT 3
