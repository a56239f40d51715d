-- How many outcomes rows the plans of a day and after have: retention_retrain_uplift's trigger.
-- grain: one row; reads: outcomes (partitions from the day on); params: since DATE
SELECT COUNT(*) AS outcomes
FROM `{project}.{dataset}.outcomes`
WHERE plan_date >= @since
