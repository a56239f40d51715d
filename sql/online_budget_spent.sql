-- What a day's online offers have reserved so far (0 before the day's first reservation).
-- grain: one row; reads: online_budget (budget_date = day)
-- params: day DATE
SELECT COALESCE(SUM(spent), 0) AS spent
FROM `{project}.{dataset}.online_budget`
WHERE budget_date = @day
