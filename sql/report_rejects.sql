-- The rejected input rows of one run, for `retention report`.
-- grain: one row per rejected field; reads: rejects; params: ds DATE, run_id STRING
SELECT table_name, customer_id, field, value, reason
FROM `{project}.{dataset}.rejects`
WHERE plan_date = @ds AND run_id = @run_id
