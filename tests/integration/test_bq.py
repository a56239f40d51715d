"""The official BigQuery client against the embedded emulator: contract tables, loads, the atomic replace."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from retention.infra import bq

DAY = dt.date(2026, 3, 1)


def _plan_rows(n: int, run_id: str) -> pd.DataFrame:
    return pd.DataFrame({
        "plan_date": [DAY] * n, "customer_id": [f"C{i}" for i in range(n)], "run_id": [run_id] * n,
        "contact": [i % 2 == 0 for i in range(n)], "holdout": [False] * n,
        "reason_codes": [["tenure_months", "contract=month_to_month"]] * n,
        "send_at": [pd.Timestamp("2026-03-01 13:00", tz="UTC")] * n,
    })


def test_contract_tables_are_partitioned_and_clustered(bq_client, cfg):
    table = bq_client.get_table(cfg.table("contact_plan"))
    assert table.time_partitioning.field == "plan_date"
    assert table.clustering_fields == ["customer_id"]
    assert [f.name for f in table.schema] == bq.columns("contact_plan")
    assert {t.table_id for t in bq_client.list_tables(cfg.dataset)} >= set(bq.CONTRACT_TABLES)


def test_replace_partition_replaces_exactly_that_day(bq_client, cfg):
    other = _plan_rows(3, "other").assign(plan_date=DAY + dt.timedelta(days=1))
    bq.replace_partition(bq_client, cfg, other, "contact_plan", "plan_date", DAY + dt.timedelta(days=1))
    bq.replace_partition(bq_client, cfg, _plan_rows(5, "first"), "contact_plan", "plan_date", DAY)
    bq.replace_partition(bq_client, cfg, _plan_rows(4, "second"), "contact_plan", "plan_date", DAY)
    got = bq.query(bq_client, cfg, f"SELECT run_id, COUNT(*) AS n FROM `{cfg.table('contact_plan')}` "
                                   "WHERE plan_date BETWEEN @a AND @b GROUP BY run_id ORDER BY run_id",
                   a=DAY, b=DAY + dt.timedelta(days=1))
    assert got.to_dict("list") == {"run_id": ["other", "second"], "n": [3, 4]}
    staged = list(bq_client.list_tables(cfg.staging_dataset))
    assert staged == [], "the staging table of each replace is dropped"


def test_round_trip_keeps_types(bq_client, cfg):
    bq.replace_partition(bq_client, cfg, _plan_rows(2, "types"), "contact_plan", "plan_date", DAY)
    got = bq.query(bq_client, cfg, f"SELECT * FROM `{cfg.table('contact_plan')}` WHERE plan_date = @ds "
                                   "ORDER BY customer_id", ds=DAY)
    assert list(got["reason_codes"][0]) == ["tenure_months", "contract=month_to_month"]
    assert got["send_at"][0] == pd.Timestamp("2026-03-01 13:00", tz="UTC")
    assert got["plan_date"][0] == DAY and got["contact"].tolist() == [True, False]


def test_only_dates_and_run_id_shaped_text_become_sql_literals():
    assert bq._literal(DAY) == f"DATE '{DAY.isoformat()}'"
    assert bq._literal("manual__2026-11-25T12:00:00+00:00") == "'manual__2026-11-25T12:00:00+00:00'"
    for bad in ("x'; DROP TABLE t; --", "a b", "", dt.datetime(2026, 1, 1), 7):
        with pytest.raises(ValueError, match="slice key"):
            bq._literal(bad)


def test_null_in_required_column_names_row_and_field():
    bad = _plan_rows(3, "bad")
    bad.loc[1, "run_id"] = None
    with pytest.raises(ValueError, match=r"contact_plan.run_id is REQUIRED .* rows \[1\] \(customer_id \['C1'\]\)"):
        bq.to_arrow(bad, "contact_plan")


def test_a_failed_insert_rolls_back_its_delete_and_leaves_the_previous_partition(bq_client, cfg, monkeypatch):
    bq.replace_partition(bq_client, cfg, _plan_rows(3, "good"), "contact_plan", "plan_date", DAY)
    swap = bq._swap_sql  # the DELETE runs, then the INSERT fails: the transaction must undo the DELETE
    monkeypatch.setattr(bq, "_swap_sql", lambda *a: swap(*a).replace("INSERT INTO `", "INSERT INTO `nowhere"))
    with pytest.raises(Exception, match="(?i)not found|does not exist|catalog|invalid"):
        bq.replace_partition(bq_client, cfg, _plan_rows(4, "bad"), "contact_plan", "plan_date", DAY)
    assert list(bq_client.list_tables(cfg.staging_dataset)) == []
    got = bq.query(bq_client, cfg, f"SELECT run_id FROM `{cfg.table('contact_plan')}` WHERE plan_date = @ds", ds=DAY)
    assert set(got["run_id"]) == {"good"} and len(got) == 3


def test_daily_customers_sql_derives_history_features(bq_client, cfg):
    day = dt.date(2026, 4, 1)
    ago = lambda n: day - dt.timedelta(days=n)  # noqa: E731
    customers = pd.DataFrame({"snapshot_date": [day] * 3, "customer_id": ["a", "b", "c"], "monthly_charges": [1.0] * 3})
    history = pd.DataFrame({"contact_date": [ago(1), ago(10), ago(40), ago(3), day],
                            "customer_id": ["a", "a", "a", "b", "b"], "plan_date": [ago(1), ago(10), ago(40), ago(3), day],
                            "offer_level": [1, 2, 0, 1, 3], "accepted": [False, True, None, True, False]})
    bq.replace_partition(bq_client, cfg, customers, "customers", "snapshot_date", day)
    bq.load(bq_client, history, "contact_history", cfg.table("contact_history"), truncate=False)
    bq.load(bq_client, pd.DataFrame({"customer_id": ["c"], "reason": ["opt_out"], "since": [ago(5)]}),
            "suppression", cfg.table("suppression"))
    got = bq.query(bq_client, cfg, bq.sql_text("daily_customers", cfg), ds=day, window=30,
                   lookback=cfg.ledger_lookback_days).set_index("customer_id")
    assert got["contacts_in_window"].to_dict() == {"a": 2, "b": 1, "c": 0}
    assert got["days_since_contact"].to_dict() == {"a": 1, "b": 3, "c": 999}
    assert got["total_contacts"].to_dict() == {"a": 3, "b": 1, "c": 0}
    assert got["last_outcome"].to_dict() == {"a": "failure", "b": "success", "c": "nonexistent"}
    assert got["suppressed"].to_dict() == {"a": False, "b": False, "c": True}

    # the contact ledger: published plans count before the send system records them, never twice after
    plan = f"`{cfg.table('contact_plan')}`"
    bq.execute(bq_client, f"INSERT INTO {plan} (plan_date, customer_id, run_id, contact, followup_days, send_at) VALUES "
                          f"(DATE '{ago(1)}', 'a', 'r1', TRUE, 7, TIMESTAMP '{ago(1)} 14:00:00+00'), "
                          f"(DATE '{ago(2)}', 'b', 'r2', TRUE, 0, TIMESTAMP '{ago(2)} 09:00:00+00'), "
                          f"(DATE '{ago(9)}', 'c', 'r3', TRUE, 8, TIMESTAMP '{ago(9)} 10:00:00+00')")
    got = bq.query(bq_client, cfg, bq.sql_text("daily_customers", cfg), ds=day, window=30,
                   lookback=cfg.ledger_lookback_days).set_index("customer_id")
    # a: the plan's contact on day-1 is the recorded one (plan_date, customer, sequence 0): not counted twice; its
    # follow-up, pending on day+6, counts. b: a second message on day-2, not yet recorded. c: a contact on day-9 and
    # its follow-up on day-1, both unrecorded
    assert got["contacts_in_window"].to_dict() == {"a": 3, "b": 2, "c": 2}
    assert got["days_since_contact"].to_dict() == {"a": 1, "b": 2, "c": 1}
    assert got["total_contacts"].to_dict() == {"a": 3, "b": 2, "c": 2}

    # a save-desk decision of the online service early on ds is a contact too (and its follow-up)
    bq.execute(bq_client, f"INSERT INTO `{cfg.table('online_decisions')}` (decision_date, decided_at, customer_id, "
                          f"contact, followup_days) VALUES (DATE '{day}', TIMESTAMP '{day} 02:00:00+00', 'c', TRUE, 9)")
    got = bq.query(bq_client, cfg, bq.sql_text("daily_customers", cfg), ds=day, window=30,
                   lookback=cfg.ledger_lookback_days).set_index("customer_id")
    assert got.loc["c", "contacts_in_window"] == 4 and got.loc["c", "days_since_contact"] == 0


def test_ensure_tables_adds_the_columns_a_grown_contract_has_and_keeps_the_rows(bq_client, cfg):
    name = f"{cfg.project}.{cfg.dataset}.grown_{dt.datetime.now().strftime('%H%M%S%f')}"
    bq.execute(bq_client, f"CREATE TABLE `{name}` (contact_date DATE, customer_id STRING, plan_date DATE, "
                          "offer_level INT64, accepted BOOL, churned BOOL)")
    bq.execute(bq_client, f"INSERT INTO `{name}` VALUES (DATE '2026-04-01', 'x', NULL, 1, TRUE, FALSE)")
    existing = bq_client.get_table(name)
    bq._add_missing_columns(bq_client, cfg, "contact_history", existing,
                            table_id=name)
    rows = bq.query(bq_client, cfg, f"SELECT customer_id, sequence FROM `{name}`")
    assert rows.to_dict("records") == [{"customer_id": "x", "sequence": None}]


def test_read_query_over_storage_api_equals_rest(bq_client, cfg):
    bq.replace_partition(bq_client, cfg, _plan_rows(50, "read"), "contact_plan", "plan_date", DAY)
    sql = f"SELECT customer_id, contact, reason_codes, send_at FROM `{cfg.table('contact_plan')}` WHERE plan_date = @ds"
    fast = bq.read_query(bq_client, cfg, sql, "test_read", ds=DAY).sort_values("customer_id", ignore_index=True)
    rest = bq.query(bq_client, cfg, sql, ds=DAY).sort_values("customer_id", ignore_index=True)
    assert len(fast) == 50
    assert fast[["customer_id", "contact", "send_at"]].equals(rest[["customer_id", "contact", "send_at"]])
    assert [list(x) for x in fast["reason_codes"]] == [list(x) for x in rest["reason_codes"]]
    assert [t.table_id for t in bq_client.list_tables(cfg.staging_dataset)] == []


def test_read_query_chunks_buckets_rows_by_id_hash_each_sorted(bq_client, cfg, tmp_path):
    from retention import hashing
    from retention.infra import parquet

    sql = "SELECT CONCAT('id', CAST(i AS STRING)) AS customer_id, i AS n FROM UNNEST(GENERATE_ARRAY(1, 40)) AS i"
    sizes = bq.read_query_chunks(bq_client, cfg, sql, "chunks_test", tmp_path / "out.parquet", 4, "customer_id")
    chunks = list(parquet.row_groups(tmp_path / "out.parquet"))
    assert sizes == [len(c) for c in chunks] and sum(sizes) == 40 and len(chunks) == 4
    for b, chunk in enumerate(chunks):
        assert chunk["customer_id"].is_monotonic_increasing
        assert ((hashing.stable_hash(chunk["customer_id"]) >> np.uint64(32)) % np.uint64(4) == b).all()
        assert (chunk["n"] == chunk["customer_id"].str[2:].astype(int)).all()
    assert sorted(pd.concat(chunks)["n"]) == list(range(1, 40 + 1))
    assert not (tmp_path / ".out.buckets").exists()
