-- The headline impact rows (segment `all`) of the windows ending on the day given, for `retention summary`.
-- grain: one impact row per window; reads: impact; params: end DATE
SELECT window_start, window_end, treated, control, churn_treated, churn_control, lift, lift_low, lift_high, p_value
FROM `{project}.{dataset}.impact`
WHERE window_end = @end AND segment = 'all'
ORDER BY window_start
