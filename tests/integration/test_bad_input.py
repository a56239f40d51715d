"""Bad input, named: 49 kinds of bad rows across customers, contact_history and suppression, and 8 schema problems.

Every row kind is planted at once in one day (each in its own row, so each must be found by its own row and
field); the run stops at validate_input because far more than 5 % of the day is bad, and must leave nothing
half-written. Each schema problem fails validate_input before anything at all is written.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import shutil
from typing import Any, NamedTuple

import pandas as pd
import pytest

import days
from retention.infra import bq, parquet
from retention.pipeline import daily, quality
from retention.datasets.telco import FLAGS

DAY = dt.date(2026, 5, 4)
DS = DAY.isoformat()
PREFIX = "BI-"
N = 60
FUTURE = DAY + dt.timedelta(days=400)  # after every snapshot any test loads
CLEAN, BAD, PROCEED = "bi-clean", "bi-bad", "bi-proceed"


class Kind(NamedTuple):
    """One kind of bad input: where it is planted and the reject that must name it."""

    name: str
    table: str
    field: str
    planted: Any
    customer_id: str = ""
    """The row's customer_id; empty: a fresh id for a planted customers row."""
    expected: Any = "planted"
    """The value the reject records; "planted" means str(planted)."""


def _c(name: str, field: str, planted: Any, expected: Any = "planted") -> Kind:
    return Kind(name, "customers", field, planted, "", expected)


CUSTOMER_KINDS = [
    _c("monthly charges null (NaN in the frame)", "monthly_charges", math.nan, None),
    _c("negative monthly charges", "monthly_charges", -5.0),
    _c("absurd monthly charges", "monthly_charges", 1e9),
    _c("infinite monthly charges", "monthly_charges", math.inf),
    _c("negative total charges", "total_charges", -1.0),
    _c("null total charges", "total_charges", None, None),
    _c("absurd total charges", "total_charges", 5e10),
    _c("negative tenure", "tenure_months", -3),
    _c("absurd tenure (416 years)", "tenure_months", 5000),
    _c("null tenure", "tenure_months", None, None),
    _c("unknown plan", "plan", "cable"),
    _c("null plan", "plan", None, None),
    _c("unknown contract", "contract", "weekly"),
    _c("unknown payment method", "payment_method", "bitcoin"),
    _c("unknown channel", "channel", "fax"),
    _c("null channel", "channel", None, None),
    _c("gender outside the contract vocabulary", "gender", "X"),
    _c("unknown time zone", "time_zone", "Mars/Olympus"),
    _c("time zone in the wrong case", "time_zone", "america/chicago"),
    _c("time zone abbreviation, not IANA", "time_zone", "PST"),
    _c("time zone with a space for the underscore", "time_zone", "America/New York"),
    _c("null time zone", "time_zone", None, None),
    _c("negative customer value", "customer_value", -100.0),
    _c("null customer value", "customer_value", None, None),
    _c("null service flag", "partner", None, None),
    _c("null name", "name", None, None),
    _c("empty name", "name", ""),
    _c("blank name", "name", "   "),
    _c("huge name (10,000 characters)", "name", "x" * 10_000, "x" * quality.VALUE_CHARS + "... (10000 characters)"),
    _c("name with a terminal escape", "name", "Ana\x1b[2J"),
    _c("empty customer_id", "customer_id", ""),
    _c("huge customer_id", "customer_id", PREFIX + "9" * 100),
    _c("customer_id with stray whitespace", "customer_id", f" {PREFIX}PADDED "),
    _c("duplicate customer_id", "customer_id", "<second good id>"),
    _c("monthly charges NaN stored in BigQuery", "monthly_charges", "NaN", None),
]
HISTORY_KINDS = [
    Kind("history for an unknown customer", "contact_history", "customer_id", f"{PREFIX}GHOST-1", f"{PREFIX}GHOST-1"),
    Kind("history with an empty customer_id", "contact_history", "customer_id", "", ""),
    Kind("history offer level out of range", "contact_history", "offer_level", 7),
    Kind("history offer level negative", "contact_history", "offer_level", -1),
    Kind("history planned after the contact", "contact_history", "plan_date", DAY - dt.timedelta(days=3)),
    Kind("history contact date in the future", "contact_history", "contact_date", FUTURE),
    Kind("history row loaded twice", "contact_history", "contact_date", DAY - dt.timedelta(days=8)),
]
SUPPRESSION_KINDS = [
    Kind("suppression with an empty reason", "suppression", "reason", ""),
    Kind("suppression without reason (NULL)", "suppression", "reason", None, expected=None),
    Kind("suppression with an unknown reason", "suppression", "reason", "spam"),
    Kind("suppression of an unknown customer", "suppression", "customer_id", f"{PREFIX}GHOST-2", f"{PREFIX}GHOST-2"),
    Kind("suppression starting in the future", "suppression", "since", FUTURE),
    Kind("two suppression rows for one customer", "suppression", "customer_id", "<the customer>"),
]
ROW_KINDS = CUSTOMER_KINDS + HISTORY_KINDS + SUPPRESSION_KINDS


# planting

def _bad_customers(good: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per customers kind (a copy of a good row with one field broken) and kind name -> row id."""
    rows, ids = [], {}
    for i, kind in enumerate(CUSTOMER_KINDS):
        row = good.iloc[[0]].astype({"tenure_months": "Int64", **{f: "boolean" for f in FLAGS.values()}})
        row = row.astype({c: object for c in ("monthly_charges", "total_charges", "customer_value")})
        row["customer_id"] = f"{PREFIX}BAD-{i:02d}"
        value = good["customer_id"].iloc[1] if kind.planted == "<second good id>" else kind.planted
        row[kind.field] = 1.0 if kind.planted == "NaN" else value  # NaN goes in by DML below, past the loader
        ids[kind.name] = row["customer_id"].iloc[0]
        rows.append(row)
    bad = pd.concat(rows, ignore_index=True)
    return bad, ids


def _plant(client, cfg, good: pd.DataFrame) -> dict[str, str]:
    """Plant every row kind in the day's tables; returns kind name -> the customer_id that names its row."""
    bad, ids = _bad_customers(good)
    bq.replace_partition(client, cfg, pd.concat([good, bad], ignore_index=True), "customers", "snapshot_date", DAY)
    nan_id = ids["monthly charges NaN stored in BigQuery"]
    bq.execute(client, f"UPDATE `{cfg.table('customers')}` SET monthly_charges = @nan "
                       "WHERE snapshot_date = @ds AND customer_id = @id", nan=math.nan, ds=DAY, id=nan_id)

    spare = iter(good["customer_id"].iloc[2:])  # good customers whose history or suppression gets broken
    history = []
    for kind in HISTORY_KINDS:
        cid = kind.customer_id if kind.customer_id or kind.planted == "" else next(spare)
        when = kind.planted if kind.field == "contact_date" else DAY - dt.timedelta(days=6)
        row = {"contact_date": when, "customer_id": cid, "plan_date": when, "offer_level": 1}
        if kind.field in ("offer_level", "plan_date"):
            row[kind.field] = kind.planted
        history += [row, row] if kind.name == "history row loaded twice" else [row]
        ids[kind.name] = cid
    bq.load(client, pd.DataFrame(history), "contact_history", cfg.table("contact_history"), truncate=False)

    suppression = []
    for kind in SUPPRESSION_KINDS:
        cid = kind.customer_id or next(spare)
        row = {"customer_id": cid, "reason": "opt_out", "since": DAY - dt.timedelta(days=10)}
        if kind.field != "customer_id":
            row[kind.field] = kind.planted
        suppression += [row, {**row, "reason": "complaint"}] if kind.planted == "<the customer>" else [row]
        ids[kind.name] = cid
    null_reason = [r for r in suppression if r["reason"] is None]  # REQUIRED: only DML gets a NULL past the loader
    bq.load(client, pd.DataFrame([r for r in suppression if r["reason"] is not None]), "suppression",
            cfg.table("suppression"), truncate=False)
    for r in null_reason:
        bq.execute(client, f"INSERT INTO `{cfg.table('suppression')}` (customer_id, reason, since) "
                           "VALUES (@id, NULL, @since)", id=r["customer_id"], since=r["since"])
    ids["duplicate customer_id"] = good["customer_id"].iloc[1]
    return ids


# fixtures

@pytest.fixture(scope="module")
def good(bq_client, cfg, champions):
    """The clean day, planned and published once: the previous plan that bad input must leave alone."""
    rows = days.customers(cfg, PREFIX, N, DAY)
    days.seed_days(bq_client, cfg, rows, [DAY])
    daily.run_all(cfg, DS, CLEAN)
    yield rows
    days.forget(bq_client, cfg, PREFIX)
    bq.execute(bq_client, f"DELETE FROM `{cfg.table('contact_history')}` WHERE customer_id = ''")


@pytest.fixture(scope="module")
def bad_run(good, bq_client, cfg):
    """Plant every row kind, run extract and validate_input; the reject share stops the run."""
    ids = _plant(bq_client, cfg, good)
    before = days.plan(bq_client, cfg, DAY)
    daily.extract(cfg, DS, BAD)
    with pytest.raises(quality.RejectShareError) as err:
        daily.validate_input(cfg, DS, BAD)
    rejects = bq.query(bq_client, cfg, f"SELECT * FROM `{cfg.table('rejects')}` WHERE plan_date = @ds "
                                       "AND run_id = @run_id", ds=DAY, run_id=BAD)
    return {"ids": ids, "error": str(err.value), "rejects": rejects, "before": before,
            "after": days.plan(bq_client, cfg, DAY), "staging": days.staging_tables(bq_client, cfg),
            "report": quality.report(cfg, DS)}


def test_checked_in_chunks_the_same_rows_are_rejected(bad_run, bq_client, cfg):
    """Extract buckets the day by customer hash and validate_input checks chunk by chunk: a duplicate id and a
    customer's broken history still meet in one chunk, and the day's rejects and verdict are the same."""
    chunked, run_id = dataclasses.replace(cfg, chunk_rows=7), f"{BAD}-chunked"
    daily.extract(chunked, DS, run_id)
    assert len(parquet.group_sizes(chunked.run_dir(DS, run_id) / "extract.parquet")) >= 5
    with pytest.raises(quality.RejectShareError) as err:
        daily.validate_input(chunked, DS, run_id)
    rejects = bq.query(bq_client, cfg, f"SELECT * FROM `{cfg.table('rejects')}` WHERE plan_date = @ds "
                                       "AND run_id = @run_id", ds=DAY, run_id=run_id)
    key = ["table_name", "customer_id", "field", "value", "reason"]
    ordered = lambda r: r[key].sort_values(key, na_position="first", ignore_index=True)  # noqa: E731
    pd.testing.assert_frame_equal(ordered(rejects), ordered(bad_run["rejects"]))
    assert str(err.value).split("; report ")[0] == bad_run["error"].split("; report ")[0]


# row kinds

def test_at_least_thirty_kinds():
    assert len(ROW_KINDS) + len(SCHEMA_KINDS) >= 30 and len({k.name for k in ROW_KINDS}) == len(ROW_KINDS)
    assert {k.table for k in ROW_KINDS} == {"customers", "contact_history", "suppression"}


@pytest.mark.parametrize("kind", ROW_KINDS, ids=[k.name for k in ROW_KINDS])
def test_row_kind_is_rejected_by_row_and_field(bad_run, kind):
    rejects = bad_run["rejects"]
    cid = bad_run["ids"][kind.name]
    mine = rejects[(rejects["table_name"] == kind.table) & (rejects["customer_id"] == cid)
                   & (rejects["field"] == kind.field)]
    assert len(mine) >= 1, f"no reject for {kind.table} customer_id={cid!r} field {kind.field}"
    expected = str(kind.planted) if kind.expected == "planted" else kind.expected
    if kind.planted in ("<second good id>", "<the customer>"):
        expected = cid
    values = [None if pd.isna(v) else v for v in mine["value"]]
    assert expected in values, (expected, values)
    assert all(mine["reason"].str.len() > 0)
    if kind.table != "customers":  # the rest of the row key is named in the reason
        assert mine["reason"].str.contains(r"\[(?:contact_date|since)=\d{4}-\d{2}-\d{2}\]$").all()
    # nothing half-written: the previous plan is untouched and no staging table is left
    pd.testing.assert_frame_equal(bad_run["after"], bad_run["before"])
    assert bad_run["staging"] == []


def test_bad_run_stops_with_the_reason_and_writes_no_plan(bad_run, cfg, bq_client):
    assert bad_run["error"].startswith("customers: rejected ")
    assert "more than max_reject_share 5.0%; top reasons: " in bad_run["error"]
    assert bad_run["error"].endswith(f"report {cfg.artifacts / 'reports' / DS / 'data_docs' / 'index.html'}")
    assert set(bad_run["after"]["run_id"]) == {CLEAN}
    assert not (cfg.run_dir(DS, BAD) / "validate_input.parquet").exists()
    assert BAD not in set(days.plan_runs(bq_client, cfg, DAY)["run_id"])


def test_report_names_the_failed_run(bad_run, cfg):
    text = bad_run["report"]
    assert text.startswith(f"Data quality for {DS}, run {BAD}\n  not published")
    for table in ("customers", "contact_history", "suppression"):
        assert f"\n    {table}" in text
    assert "failed: monthly_charges expect_column_values_to_be_between(min_value=0, max_value=10000)" in text
    assert re.search(r"\n    suppression: \d+ \(.*reason \d+.*\)\n", text)
    assert re.search(r"\n    contact_history: \d+ \(.*offer_level \d+.*\)\n", text)
    assert "Ana\x1b" not in text and "x" * 300 not in text  # values are not echoed: names stay out
    path = text.rsplit("report: ", 1)[1]
    assert path.endswith("data_docs/index.html") and cfg.artifacts.joinpath(path).is_file()


# schema problems

def _break(column: str, how: str):
    return {"drop": lambda d: d.drop(columns=column),
            "rename": lambda d: d.rename(columns={column: column.removesuffix("s") + "_x"}),
            "string": lambda d: d.assign(**{column: d[column].astype("str")}),
            "extra": lambda d: d.assign(**{column: False})}[how]


SCHEMA_KINDS = {
    "customers missing a column": ("extract", _break("tenure_months", "drop"),
                                   "missing column 'tenure_months' (INT64)"),
    "customers column renamed": ("extract", _break("monthly_charges", "rename"),
                                 "missing column 'monthly_charges' (FLOAT64), found 'monthly_charge_x' instead"),
    "customers column of the wrong type": ("extract", _break("monthly_charges", "string"),
                                           "column 'monthly_charges' is string, expected FLOAT64"),
    "customers with an unexpected column": ("extract", _break("churned", "extra"), "unexpected column 'churned'"),
    "customers without a history feature": ("extract", _break("suppressed", "drop"), "missing column 'suppressed'"),
    "contact_history column of the wrong type": ("extract_contact_history", _break("offer_level", "string"),
                                                 "column 'offer_level' is string, expected INT64"),
    "suppression column renamed": ("extract_suppression", _break("since", "rename"),
                                   "missing column 'since' (DATE), found 'since_x' instead"),
}


def _nothing_written(client, cfg, run_id: str, before: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(days.plan(client, cfg, DAY), before)
    assert days.staging_tables(client, cfg) == []
    assert bq.count(client, cfg, "rejects", "plan_date = @ds AND run_id = @run_id", ds=DAY, run_id=run_id) == 0
    assert not (cfg.run_dir(DS, run_id) / "validate_input.parquet").exists()
    assert not list((cfg.artifacts / "reports" / DS).glob(f"gx_validations/*/{DS}_{run_id}"))


@pytest.mark.parametrize("name", SCHEMA_KINDS)
def test_schema_problem_fails_before_anything_is_written(good, bq_client, cfg, name):
    stage, breaker, message = SCHEMA_KINDS[name]
    run_id = "bi-schema-" + name.replace(" ", "-")
    shutil.copytree(cfg.run_dir(DS, CLEAN), cfg.run_dir(DS, run_id), dirs_exist_ok=True)
    (cfg.run_dir(DS, run_id) / "validate_input.parquet").unlink()
    path = cfg.run_dir(DS, run_id) / f"{stage}.parquet"
    breaker(pd.read_parquet(path)).to_parquet(path, index=False)
    before = days.plan(bq_client, cfg, DAY)
    with pytest.raises(quality.SchemaError) as err:
        daily.validate_input(cfg, DS, run_id)
    table = stage.removeprefix("extract_") if stage != "extract" else "customers"
    assert str(err.value).startswith(f"{table} does not match sql/schema/{table}.json: ") and message in str(err.value)
    _nothing_written(bq_client, cfg, run_id, before)


def test_warehouse_table_of_the_wrong_shape_fails_before_anything_is_written(good, bq_client, cfg):
    """A customers table in BigQuery without tenure_months and with monthly_charges as STRING."""
    other = dataclasses.replace(cfg, dataset="bi_schema")
    bq.ensure_tables(bq_client, other)
    bq_client.delete_table(other.table("customers"))
    table = bq.table_spec(other, "customers")
    table.schema = [f if f.name != "monthly_charges" else bq.bigquery.SchemaField(f.name, "STRING")
                    for f in table.schema if f.name != "tenure_months"]
    bq_client.create_table(table)
    bq.execute(bq_client, f"INSERT INTO `{other.table('customers')}` (snapshot_date, customer_id, monthly_charges) "
                          "VALUES (@ds, @id, @charges)", ds=DAY, id=f"{PREFIX}SHAPE", charges="29.85")
    daily.extract(other, DS, "bi-shape")
    with pytest.raises(quality.SchemaError) as err:
        daily.validate_input(other, DS, "bi-shape")
    assert "missing column 'tenure_months' (INT64)" in str(err.value)
    assert "column 'monthly_charges' is string, expected FLOAT64" in str(err.value)
    assert bq.count(bq_client, other, "rejects") == 0 and bq.count(bq_client, other, "contact_plan") == 0
    assert days.staging_tables(bq_client, other) == []
    bq_client.delete_dataset(other.dataset, delete_contents=True)
    bq_client.delete_dataset(other.staging_dataset, delete_contents=True)


# the rest proceed

def test_under_a_higher_threshold_the_rest_proceed(bad_run, bq_client, cfg):
    loose = dataclasses.replace(cfg, max_reject_share=0.9)
    daily.run_all(loose, DS, PROCEED)
    rejects = bq.query(bq_client, cfg, f"SELECT * FROM `{cfg.table('rejects')}` WHERE plan_date = @ds "
                                       "AND run_id = @run_id", ds=DAY, run_id=PROCEED)
    key = ["table_name", "customer_id", "field", "value", "reason"]
    assert set(map(tuple, rejects[key].fillna("").to_numpy())) == set(map(tuple, bad_run["rejects"][key]
                                                                           .fillna("").to_numpy()))
    snapshot = bq.query(bq_client, cfg, f"SELECT customer_id FROM `{cfg.table('customers')}` "
                                        "WHERE snapshot_date = @ds", ds=DAY)["customer_id"]
    published = days.plan(bq_client, cfg, DAY)
    assert set(published["run_id"]) == {PROCEED}
    assert set(published["customer_id"]) == set(snapshot) - set(rejects["customer_id"])
    run = days.plan_runs(bq_client, cfg, DAY).set_index("run_id").loc[PROCEED]
    assert run["rejected"] == len(snapshot) - len(published) and run["violations"] == 0
    text = quality.report(cfg, DS)
    assert text.startswith(f"Data quality for {DS}, run {PROCEED}\n  published: ")
