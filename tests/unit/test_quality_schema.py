"""check_schema against the contract in sql/schema, the suites' columns against that contract, the send_at checks."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from retention.pipeline.quality import (HISTORY_FEATURES, INJECTED, ROW_CHECKS, SEND_CHECKS, VALUE_CHARS, SchemaError, _value,
                               check_schema, column_types, in_quiet_hours, load_suite, send_checks, spec_field,
                               suite_columns)

FLAGS = ["senior_citizen", "partner", "dependents", "phone_service", "multiple_lines", "online_security",
         "online_backup", "device_protection", "tech_support", "streaming_tv", "streaming_movies",
         "paperless_billing"]
PREFIX = "customers does not match sql/schema/customers.json: "


def customers() -> pd.DataFrame:
    """Two valid rows with every contract column."""
    df = pd.DataFrame({
        "snapshot_date": [dt.date(2024, 6, 1)] * 2, "customer_id": ["A1", "B2"], "name": ["Ana", "Bo"],
        "time_zone": ["America/Chicago", "Europe/Paris"], "channel": ["email", "sms"], "gender": ["Female", "Male"],
        "tenure_months": [3, 40], "plan": ["dsl", "none"], "contract": ["one_year", "two_year"],
        "payment_method": ["mailed_check", "credit_card"], "monthly_charges": [29.85, 56.95],
        "total_charges": [89.55, 2278.0], "customer_value": [358.2, 683.4],
    })
    for flag in FLAGS:
        df[flag] = [True, False]
    return df


def test_contract_frame_passes():
    check_schema(customers(), "customers")


def test_column_order_and_nullable_dtypes_pass():
    df = customers()
    df["tenure_months"] = pd.array([3, None], dtype="Int64")
    df["partner"] = pd.array([True, None], dtype="boolean")
    df["name"] = [None, "Bo"]
    check_schema(df[df.columns[::-1]], "customers")


def test_integer_charges_are_floats_enough():
    check_schema(customers().assign(monthly_charges=[30, 57]), "customers")


def test_missing_column_is_named():
    with pytest.raises(SchemaError) as err:
        check_schema(customers().drop(columns="tenure_months"), "customers")
    assert str(err.value) == PREFIX + "missing column 'tenure_months' (INT64)"


def test_renamed_column_is_named():
    with pytest.raises(SchemaError) as err:
        check_schema(customers().rename(columns={"monthly_charges": "monthly_charge"}), "customers")
    assert str(err.value) == PREFIX + "missing column 'monthly_charges' (FLOAT64), found 'monthly_charge' instead"


def test_wrong_type_is_named():
    with pytest.raises(SchemaError) as err:
        check_schema(customers().assign(monthly_charges=["29.85", "56.95"]), "customers")
    assert str(err.value) == PREFIX + "column 'monthly_charges' is string, expected FLOAT64"


def test_float_in_int_column_is_wrong_type():
    with pytest.raises(SchemaError) as err:
        check_schema(customers().assign(tenure_months=[3.0, 40.5]), "customers")
    assert str(err.value) == PREFIX + "column 'tenure_months' is floating, expected INT64"


def test_unexpected_column_is_named():
    with pytest.raises(SchemaError) as err:
        check_schema(customers().assign(churned=[True, False]), "customers")
    assert str(err.value) == PREFIX + "unexpected column 'churned'"


def test_every_problem_is_listed():
    df = customers().drop(columns="plan").assign(gender=[0, 1], zzz=[1, 2])
    with pytest.raises(SchemaError) as err:
        check_schema(df, "customers")
    assert str(err.value) == (PREFIX + "missing column 'plan' (STRING); unexpected column 'zzz'; "
                              "column 'gender' is integer, expected STRING")


def history() -> pd.DataFrame:
    return customers().assign(contacts_in_window=[0, 2], days_since_contact=[999, 3], total_contacts=[0, 5],
                              last_outcome=["nonexistent", "failure"], suppressed=[False, True])


def test_history_features_are_allowed_and_typed():
    check_schema(history(), "customers")
    check_schema(history(), "customers", require_extras=True)
    with pytest.raises(SchemaError) as err:
        check_schema(history().assign(days_since_contact=["999", "3"]), "customers")
    assert str(err.value) == PREFIX + "column 'days_since_contact' is string, expected INT64"


def test_history_features_required_when_asked():
    check_schema(customers(), "customers")
    with pytest.raises(SchemaError) as err:
        check_schema(history().drop(columns="suppressed"), "customers", require_extras=True)
    assert str(err.value) == PREFIX + "missing column 'suppressed' (BOOL)"


def test_history_features_only_on_customers():
    plan_cols = {c: pd.Series([None], dtype=object) for c in column_types("contact_plan")}
    with pytest.raises(SchemaError, match="unexpected column 'suppressed'$"):
        check_schema(pd.DataFrame(plan_cols).assign(suppressed=[False]), "contact_plan")


def test_repeated_column_needs_lists():
    cols = column_types("contact_plan")
    assert cols["reason_codes"] == "ARRAY<STRING>"
    df = pd.DataFrame({"plan_date": [dt.date(2024, 6, 1)], "customer_id": ["A1"], "run_id": ["r"],
                       "contact": [True], "holdout": [False], "reason_codes": [["tenure_months", "plan"]]})
    for c in cols.keys() - set(df.columns):
        df[c] = pd.Series([None], dtype=object)
    check_schema(df, "contact_plan")
    with pytest.raises(SchemaError) as err:
        check_schema(df.assign(reason_codes=["tenure_months"]), "contact_plan")
    assert str(err.value) == ("contact_plan does not match sql/schema/contact_plan.json: "
                              "column 'reason_codes' is string, expected ARRAY<STRING>")


@pytest.mark.parametrize("table,columns", [
    ("customers", set(column_types("customers")) | set(HISTORY_FEATURES)),
    ("contact_history", set(column_types("contact_history")) | set(ROW_CHECKS)),
    ("suppression", set(column_types("suppression")) | set(ROW_CHECKS)),
    ("contact_plan", set(column_types("contact_plan")) | set(SEND_CHECKS) | {"suppressed"}),
])
def test_suites_read_only_contract_columns(table, columns):
    assert set(suite_columns(table)) <= columns
    for spec in load_suite(table):
        # failures are reported against a column of the table (or a history feature), never a derived check
        assert spec_field(spec) in columns - set(ROW_CHECKS) - set(SEND_CHECKS), spec
        assert set(spec) <= {"expectation", "kwargs", "field", "reason"}, spec
        assert all(v in INJECTED for v in spec["kwargs"].values() if isinstance(v, str) and v.startswith("$")), spec


def test_spec_field_prefers_the_declared_field():
    assert spec_field({"kwargs": {"column": "known_customer"}, "field": "customer_id"}) == "customer_id"
    assert spec_field({"kwargs": {"column": "plan"}}) == "plan"
    assert spec_field({"kwargs": {"column_A": "contact_date", "column_B": "plan_date"}}) == "plan_date"
    assert spec_field({"kwargs": {"column_list": ["customer_id", "contact_date"]}}) == "contact_date"


def test_quiet_hours_wrap_midnight():
    hours = np.arange(24)
    assert hours[in_quiet_hours(hours, 22, 8)].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 22, 23]
    assert hours[in_quiet_hours(hours, 1, 6)].tolist() == [1, 2, 3, 4, 5]
    assert not in_quiet_hours(hours, 8, 8).any()


def test_send_checks_read_send_at_in_the_customers_zone():
    plan = pd.DataFrame({
        "customer_id": ["a", "b", "c", "d", "e"],
        "time_zone": ["America/Chicago", "America/Chicago", "Asia/Kolkata", "Asia/Tokyo", "Europe/Paris"],
        # a: 08:00 CDT; b: 07:59 CDT; c: 22:30 IST; d: 15:00 JST, before the 06:00 UTC window; e: no send
        "send_at": pd.to_datetime(["2026-06-01T13:00Z", "2026-06-01T12:59Z", "2026-06-01T17:00Z",
                                   "2026-06-01T05:59Z", None], utc=True),
    })
    got = send_checks(plan, "2026-06-01", 22, 8, 6)
    assert got["send_quiet"].tolist() == [False, True, True, False, False]
    assert got["send_early"].tolist() == [False, False, False, True, False]


def test_absurd_values_are_cut_in_rejects():
    assert _value("x" * 10_000) == "x" * VALUE_CHARS + "... (10000 characters)"
    assert _value(None) is None and _value(float("nan")) is None and _value(-5.0) == "-5.0"


def test_time_zones_are_injected():
    assert "America/Chicago" in INJECTED["$iana_time_zones"]
    assert "Mars/Olympus" not in INJECTED["$iana_time_zones"]
