"""The online decision service: `POST /retain` decides for one customer now, as the daily plan would, under its own
daily budget kept in BigQuery (`retention serve`, `make serve`)."""
