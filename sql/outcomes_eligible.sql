-- The customers of one published plan whose outcome is recorded: everyone not suppressed, the holdout included.
-- Cooldown and fatigue rows stay: the policy arm's own earlier contacts put customers there, never the holdout's,
-- so leaving them out would select the policy arm by treatment (suppression does not depend on the arm).
-- grain: one row per customer not suppressed of plan_date = ds; key: customer_id
-- reads: contact_plan (partition ds)
-- params: ds DATE
SELECT p.customer_id, p.churn_risk, p.holdout, p.contact, p.offer_level, p.decision_reason
FROM `{project}.{dataset}.contact_plan` AS p
WHERE p.plan_date = @ds AND p.decision_reason != 'suppressed'
ORDER BY p.customer_id
