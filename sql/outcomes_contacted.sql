-- The contacted customers of one published plan, with what their simulated outcome needs (acceptance inputs).
-- grain: one row per contacted customer of plan_date = ds; key: customer_id
-- reads: contact_plan (partition ds), customers (snapshot ds), contact_history (contact_date < ds)
-- params: ds DATE, window INT64 (fatigue window in days)
SELECT p.customer_id, p.churn_risk, p.accept_prob_0, p.accept_prob_1, p.accept_prob_2, p.accept_prob_3,
       p.offer_level, p.followup_days, c.senior_citizen, c.channel,
       CAST(COUNTIF(h.contact_date > DATE_SUB(@ds, INTERVAL @window DAY)) AS INT64) AS contacts_in_window,
       CAST(COUNT(h.customer_id) AS INT64) AS total_contacts
FROM `{project}.{dataset}.contact_plan` AS p
JOIN `{project}.{dataset}.customers` AS c ON c.customer_id = p.customer_id AND c.snapshot_date = p.plan_date
LEFT JOIN `{project}.{dataset}.contact_history` AS h ON h.customer_id = p.customer_id AND h.contact_date < @ds
WHERE p.plan_date = @ds AND p.contact
GROUP BY p.customer_id, p.churn_risk, p.accept_prob_0, p.accept_prob_1, p.accept_prob_2, p.accept_prob_3,
         p.offer_level, p.followup_days, c.senior_citizen, c.channel
ORDER BY p.customer_id
