-- Reserve one online offer's committed worst-case cost from its day's online budget, or nothing.
-- grain: one row per day; key: budget_date
-- One statement, so BigQuery (and the emulator) apply it atomically: a reservation that would take `spent` past
-- the budget matches no branch and changes no row (0 rows affected = refused), whatever runs beside it.
-- params: day DATE, cost FLOAT64 (> 0), budget FLOAT64 (the budget in force)
MERGE `{project}.{dataset}.online_budget` AS t
USING (SELECT @day AS budget_date, @cost AS cost, @budget AS budget) AS s
ON t.budget_date = s.budget_date
WHEN MATCHED AND t.spent + s.cost <= s.budget THEN
  UPDATE SET spent = t.spent + s.cost, budget = s.budget, reservations = t.reservations + 1
WHEN NOT MATCHED AND s.cost <= s.budget THEN
  INSERT (budget_date, budget, spent, reservations) VALUES (s.budget_date, s.budget, s.cost, 1)
