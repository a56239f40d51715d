-- The README's example query: the day's contacts, committed spend, mean risk and expected value by offer level.
-- grain: one row per offer_pct of plan_date = ds; reads: contact_plan (partition ds); params: ds DATE
SELECT offer_pct, COUNT(*) AS contacts, ROUND(SUM(offer_cost), 2) AS committed,
       ROUND(AVG(churn_risk), 3) AS mean_risk, ROUND(SUM(expected_value), 2) AS expected_value
FROM `{project}.{dataset}.contact_plan`
WHERE plan_date = @ds AND contact
GROUP BY offer_pct
ORDER BY offer_pct
