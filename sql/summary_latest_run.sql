-- The newest run of a day, for `retention summary`.
-- grain: one plan_runs row; reads: plan_runs; params: ds DATE
SELECT * FROM `{project}.{dataset}.plan_runs`
WHERE plan_date = @ds
ORDER BY finished_at DESC
LIMIT 1
