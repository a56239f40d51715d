-- Messages of a day's plan by generator and shield action, for `retention summary`.
-- grain: one row per (generator, shield action); reads: contact_plan (partition ds); params: ds DATE
SELECT generator, JSON_VALUE(shield_checks, '$.action') AS shield_action, COUNT(*) AS messages
FROM `{project}.{dataset}.contact_plan`
WHERE plan_date = @ds AND contact
GROUP BY 1, 2
ORDER BY 3 DESC
