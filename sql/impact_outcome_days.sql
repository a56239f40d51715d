-- The plan days of [start, end] that have outcomes, for the daily DAG's impact task (no outcomes yet: no row).
-- grain: one row per plan_date with outcomes; reads: outcomes (partitions start..end); params: start DATE, end DATE
SELECT plan_date, COUNT(*) AS customers
FROM `{project}.{dataset}.outcomes`
WHERE plan_date BETWEEN @start AND @end
GROUP BY plan_date
ORDER BY plan_date
