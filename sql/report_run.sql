-- Row counts of one run, for `retention report`.
-- grain: one plan_runs row; reads: plan_runs; params: ds DATE, run_id STRING
SELECT customers, rejected, contacted
FROM `{project}.{dataset}.plan_runs`
WHERE plan_date = @ds AND run_id = @run_id
