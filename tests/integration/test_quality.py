"""The real Great Expectations suites on hand-built day and plan frames: rejects, thresholds, Data Docs, plan gates."""
import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from retention.config import Config
from retention.pipeline.quality import (PlanInvalidError, RejectShareError, SchemaError, check_schema, load_suite,
                               validate_input, validate_plan)

DS, RUN = "2024-06-01", "manual__2024-06-01T00:00:00+00:00"
N = 20
FLAGS = ["senior_citizen", "partner", "dependents", "phone_service", "multiple_lines", "online_security",
         "online_backup", "device_protection", "tech_support", "streaming_tv", "streaming_movies",
         "paperless_billing"]


def cycle(values, n=N):
    return [values[i % len(values)] for i in range(n)]


def day_frame() -> pd.DataFrame:
    """N valid customers with every contract column plus the history features."""
    monthly = [20.0 + 5 * i for i in range(N)]
    df = pd.DataFrame({
        "snapshot_date": [dt.date(2024, 6, 1)] * N, "customer_id": [f"C{i:03d}" for i in range(N)],
        "name": cycle(["Ana", "Bo", "Chen", "Dara"]),
        "time_zone": cycle(["America/Chicago", "Europe/Paris", "Asia/Tokyo", "Australia/Sydney"]),
        "channel": cycle(["email", "sms", "phone", "app"]), "gender": cycle(["Female", "Male"]),
        "tenure_months": list(range(0, 3 * N, 3)), "plan": cycle(["dsl", "fiber_optic", "none"]),
        "contract": cycle(["month_to_month", "one_year", "two_year"]),
        "payment_method": cycle(["electronic_check", "mailed_check", "bank_transfer", "credit_card"]),
        "monthly_charges": monthly, "total_charges": [m * 3 * i for i, m in enumerate(monthly)],
        "customer_value": [12 * m for m in monthly],
        "contacts_in_window": cycle([0, 1, 2]), "days_since_contact": cycle([999, 3, 12]),
        "total_contacts": cycle([0, 1, 4]), "last_outcome": cycle(["nonexistent", "failure", "success"]),
        "suppressed": cycle([False, False, False, True]),
    })
    for flag in FLAGS:
        df[flag] = cycle([True, False])
    check_schema(df, "customers", require_extras=True)
    return df


def bad_day() -> pd.DataFrame:
    """The day frame with five planted problems (six rows: the duplicate id hits two)."""
    df = day_frame()
    df.loc[3, "monthly_charges"] = -5.0
    df.loc[7, "plan"] = "cable"
    df.loc[11, "time_zone"] = "Mars/Olympus"
    df.loc[15, "customer_id"] = "C014"
    df.loc[18, "name"] = None
    return df


def test_clean_day_passes(tmp_path):
    day = day_frame()
    good, rejects, summary = validate_input(day, DS, RUN, tmp_path, max_reject_share=0.05)
    assert len(good) == N and rejects.empty and summary["success"]
    assert summary["rejected_rows"] == 0 and summary["evaluated_expectations"] == len(load_suite("customers"))
    check_schema(rejects, "rejects")


def test_bad_rows_are_rejected_with_field_and_reason(tmp_path):
    good, rejects, summary = validate_input(bad_day(), DS, RUN, tmp_path, max_reject_share=0.5)
    got = set(zip(rejects["customer_id"], rejects["field"], rejects["value"].fillna("<null>")))
    assert got == {("C003", "monthly_charges", "-5.0"), ("C007", "plan", "cable"),
                   ("C011", "time_zone", "Mars/Olympus"), ("C014", "customer_id", "C014"),
                   ("C018", "name", "<null>")}
    reasons = dict(zip(rejects["field"], rejects["reason"]))
    assert reasons["monthly_charges"] == "expect_column_values_to_be_between(min_value=0, max_value=10000)"
    assert reasons["plan"] == "expect_column_values_to_be_in_set(value_set=[dsl, fiber_optic, none])"
    assert reasons["customer_id"] == "expect_column_values_to_be_unique()"
    assert reasons["name"] == "expect_column_values_to_not_be_null()"
    assert set(rejects["plan_date"]) == {dt.date(2024, 6, 1)} and set(rejects["run_id"]) == {RUN}
    assert set(rejects["table_name"]) == {"customers"}
    check_schema(rejects, "rejects")
    # the good rows proceed: all but the five ids (the duplicate id's two rows both go)
    assert sorted(set(day_frame()["customer_id"]) - set(good["customer_id"])) == ["C003", "C007", "C011", "C014",
                                                                                 "C015", "C018"]
    assert len(good) == 14 and good["customer_id"].is_unique
    assert summary["rows"] == 20 and summary["rejected_rows"] == 6 and summary["reject_share"] == 0.3
    assert not summary["success"]


def test_reject_share_over_threshold_raises(tmp_path):
    with pytest.raises(RejectShareError) as err:
        validate_input(bad_day(), DS, RUN, tmp_path, max_reject_share=0.25)
    assert set(err.value.rejects["customer_id"]) == {"C003", "C007", "C011", "C014", "C018"}  # still recorded
    msg = str(err.value)
    assert msg == ("customers: rejected 6 of 20 rows (30.0%), more than max_reject_share 25.0%; top reasons: "
                   "customer_id expect_column_values_to_be_unique() x1, "
                   "monthly_charges expect_column_values_to_be_between(min_value=0, max_value=10000) x1, "
                   f"name expect_column_values_to_not_be_null() x1; report {tmp_path / 'data_docs' / 'index.html'}")


def test_schema_error_comes_before_the_suite(tmp_path):
    day = day_frame().assign(monthly_charges=lambda d: d["monthly_charges"].astype(str))
    with pytest.raises(SchemaError, match="column 'monthly_charges' is string, expected FLOAT64"):
        validate_input(day, DS, RUN, tmp_path, max_reject_share=0.05)
    assert not (tmp_path / "data_docs").exists()


def test_history_features_are_required(tmp_path):
    with pytest.raises(SchemaError, match="missing column 'last_outcome' \\(STRING\\)$"):
        validate_input(day_frame().drop(columns="last_outcome"), DS, RUN, tmp_path, max_reject_share=0.05)


def test_data_docs_are_rendered_under_report_dir(tmp_path):
    _, _, summary = validate_input(bad_day(), DS, RUN, tmp_path, max_reject_share=0.5)
    index = Path(summary["report_uri"])
    assert index == tmp_path / "data_docs" / "index.html" and index.is_file()
    assert "<html" in index.read_text().lower()
    (page,) = (tmp_path / "data_docs" / "validations" / "customers").rglob("*.html")
    assert "Mars/Olympus" in page.read_text()


# plan

def plan_frame() -> pd.DataFrame:
    """N planned customers with every contact_plan column: even rows contacted at offer level 1, row 1 in holdout."""
    contact = [i % 2 == 0 for i in range(N)]
    value = [12 * (20.0 + 5 * i) for i in range(N)]
    df = pd.DataFrame({
        "plan_date": [dt.date(2024, 6, 1)] * N, "customer_id": [f"C{i:03d}" for i in range(N)], "run_id": RUN,
        "risk_model": "v1", "accept_model": "v1", "policy_model": "greedy", "message_model": "template",
        "churn_risk": [i / N for i in range(N)], "accept_prob_0": 0.1, "accept_prob_1": 0.2, "accept_prob_2": 0.3,
        "accept_prob_3": 0.4, "contact": contact,
        "offer_level": pd.array([1 if c else None for c in contact], dtype="Int64"),
        "offer_pct": [0.05 if c else None for c in contact],
        "offer_cost": [v * 0.05 if c else 0.0 for v, c in zip(value, contact)],
        "followup_days": pd.array([7 if c else None for c in contact], dtype="Int64"),
        "expected_value": [v * 0.1 for v in value], "propensity": 1.0, "holdout": [i == 1 for i in range(N)],
        "decision_reason": ["contact" if c else "low_value" for c in contact],
        "reason_codes": [["tenure_months", "contract", "monthly_charges"]] * N,
        "message": [f"Hi Ana, thank you for being with us. Enjoy 5% off your next bill, customer {i}." if c
                    else None for i, c in enumerate(contact)],
        "send_at": pd.to_datetime(["2024-06-01T14:00:00Z" if c else None for c in contact]),  # 09:00 in Chicago
        "shield_checks": "{}", "generator": "template",
        "uplift_model": None, **{f"uplift_{k}": float("nan") for k in range(4)},  # use_uplift off
    })
    check_schema(df, "contact_plan")
    return df.assign(time_zone="America/Chicago", suppressed=[i == 3 for i in range(N)])  # from the extract


def test_good_plan_passes(tmp_path):
    summary = validate_plan(plan_frame(), Config(), DS, RUN, tmp_path)
    assert summary["success"] and summary["contacted"] == 10 and summary["holdout"] == 1
    assert summary["spend"] == pytest.approx(sum(12 * (20.0 + 5 * i) * 0.05 for i in range(0, N, 2)))
    assert Path(summary["report_uri"]).is_file()


def test_plan_over_budget_raises(tmp_path):
    cfg = Config(daily_budget=100.0)
    with pytest.raises(PlanInvalidError) as err:
        validate_plan(plan_frame(), cfg, DS, RUN, tmp_path)
    assert "budget: sum of offer_cost over contacted rows 390.00 > daily_budget 100.00, " \
           "largest offers ['C018', 'C016', 'C014', 'C012', 'C010']" in str(err.value)


def test_contacted_holdout_raises(tmp_path):
    plan = plan_frame()
    plan.loc[1, ["contact", "offer_level", "offer_cost"]] = [True, 1, 1.0]
    plan.loc[1, "message"] = "Hi Bo, thank you for being with us. Enjoy 5% off your next bill, customer 1."
    plan.loc[1, "send_at"] = pd.Timestamp("2024-06-01T14:00:00Z")
    with pytest.raises(PlanInvalidError) as err:
        validate_plan(plan, Config(), DS, RUN, tmp_path)
    assert str(err.value).startswith("contact_plan invalid: contact expect_column_values_to_be_in_set("
                                     "value_set=[False]) when holdout == True: 1 rows, e.g. ['C001']; report ")


def test_bad_offer_and_message_name_column_and_ids(tmp_path):
    plan = plan_frame()
    plan.loc[4, "offer_level"] = 7
    plan.loc[6, "message"] = "Stay!"
    plan.loc[8, "churn_risk"] = 1.5
    with pytest.raises(PlanInvalidError) as err:
        validate_plan(plan, Config(), DS, RUN, tmp_path)
    msg = str(err.value)
    assert "offer_level expect_column_values_to_be_in_set(value_set=[0, 1, 2, 3]) when contact == True: " \
           "1 rows, e.g. ['C004']" in msg
    assert "message expect_column_value_lengths_to_be_between(min_value=50, max_value=200) when contact == True: " \
           "1 rows, e.g. ['C006']" in msg
    assert "churn_risk expect_column_values_to_be_between(min_value=0, max_value=1): 1 rows, e.g. ['C008']" in msg


def test_plan_missing_column_raises(tmp_path):
    with pytest.raises(PlanInvalidError, match=r"lacks column\(s\) \['propensity'\]"):
        validate_plan(plan_frame().drop(columns="propensity"), Config(), DS, RUN, tmp_path)


def test_one_index_lists_input_and_plan(tmp_path):
    validate_input(day_frame(), DS, RUN, tmp_path, max_reject_share=0.05)
    summary = validate_plan(plan_frame(), Config(), DS, RUN, tmp_path)
    index = Path(summary["report_uri"]).read_text()
    assert "validations/customers/" in index and "validations/contact_plan/" in index


def test_send_at_in_quiet_hours_or_before_the_send_window_raises(tmp_path):
    plan = plan_frame()  # sends at 14:00 UTC, 09:00 in Chicago
    plan.loc[0, "send_at"] = pd.Timestamp("2024-06-01T04:00:00Z")  # 23:00 in Chicago the night before
    plan.loc[2, "send_at"] = pd.Timestamp("2024-06-01T13:30:00Z")  # 08:30 in Chicago, before the 14:00 UTC window
    plan.loc[4, "send_at"] = pd.NaT
    with pytest.raises(PlanInvalidError) as err:
        validate_plan(plan, Config(send_window_start_hour=14), DS, RUN, tmp_path)
    msg = str(err.value)
    assert "send_at send_at inside the customer's local quiet hours: 1 rows, e.g. ['C000']" in msg
    assert "send_at send_at before the day's send window opens: 2 rows, e.g. ['C000', 'C002']" in msg
    assert "send_at expect_column_values_to_not_be_null() when contact == True: 1 rows, e.g. ['C004']" in msg


def test_suppressed_contact_and_stray_message_raise(tmp_path):
    plan = plan_frame()
    plan.loc[2, "suppressed"] = True
    plan.loc[5, "message"] = "Hi Bo, a message for a customer who is not contacted today, which must not exist."
    with pytest.raises(PlanInvalidError) as err:
        validate_plan(plan, Config(), DS, RUN, tmp_path)
    msg = str(err.value)
    assert "contact expect_column_values_to_be_in_set(value_set=[False]) when suppressed == True: 1 rows, " \
           "e.g. ['C002']" in msg
    assert "message expect_column_values_to_be_null() when contact == False: 1 rows, e.g. ['C005']" in msg


# the raw contact_history and suppression rows

def related_frames() -> dict[str, pd.DataFrame]:
    """History and suppression rows for the day frame's customers, with the SQL's check columns; all valid."""
    d = dt.date(2024, 5, 20)
    history = pd.DataFrame({
        "contact_date": [d, d, dt.date(2024, 5, 1)], "customer_id": ["C001", "C002", "C001"],
        "plan_date": [d, d, dt.date(2024, 5, 1)], "offer_level": pd.array([1, 0, 3], dtype="Int64"),
        "accepted": [False, True, None], "churned": [None, None, False], "sequence": pd.array([0, 1, None], "Int64"),
        "known_customer": True, "future_date": False,
    })
    suppression = pd.DataFrame({"customer_id": ["C003"], "reason": ["opt_out"], "since": [d],
                                "known_customer": True, "future_date": False})
    return {"contact_history": history, "suppression": suppression}


def test_clean_related_rows_pass(tmp_path):
    good, rejects, summary = validate_input(day_frame(), DS, RUN, tmp_path, 0.05, related_frames())
    assert len(good) == N and rejects.empty and summary["success"]
    assert summary["tables"] == {"customers": {"rows": N, "reject_records": 0},
                                 "contact_history": {"rows": 3, "reject_records": 0},
                                 "suppression": {"rows": 1, "reject_records": 0}}


def test_bad_related_rows_name_row_field_and_leave_the_customer_out(tmp_path):
    related = related_frames()
    history, suppression = related["contact_history"], related["suppression"]
    history.loc[0, "offer_level"] = 7
    history.loc[1, "plan_date"] = dt.date(2024, 5, 25)
    history.loc[3] = [dt.date(2024, 5, 2), "GHOST", None, 1, None, None, 0, False, False]
    suppression.loc[0, "reason"] = ""
    good, rejects, summary = validate_input(day_frame(), DS, RUN, tmp_path, 0.5, related)
    got = set(zip(rejects["table_name"], rejects["customer_id"], rejects["field"], rejects["value"]))
    assert got == {("contact_history", "C001", "offer_level", "7"),
                   ("contact_history", "C002", "plan_date", "2024-05-25"),
                   ("contact_history", "GHOST", "customer_id", "GHOST"),
                   ("suppression", "C003", "reason", "")}
    reasons = dict(zip(rejects["customer_id"], rejects["reason"]))
    assert reasons["C001"] == "expect_column_values_to_be_in_set(value_set=[0, 1, 2, 3]) [contact_date=2024-05-20]"
    assert reasons["GHOST"] == "no customers snapshot holds this customer_id [contact_date=2024-05-02]"
    assert reasons["C003"] == ("expect_column_values_to_be_in_set(value_set=[opt_out, complaint, legal, deceased, "
                               "other]) [since=2024-05-20]")
    # the customers of the day named by a bad row are left out; the unknown one was never in the day
    assert sorted(set(day_frame()["customer_id"]) - set(good["customer_id"])) == ["C001", "C002", "C003"]
    assert summary["rejected_rows"] == 3 and summary["tables"]["contact_history"]["reject_records"] == 3
    check_schema(rejects, "rejects")


def test_related_schema_error_names_table_and_column(tmp_path):
    related = related_frames()
    related["suppression"] = related["suppression"].rename(columns={"reason": "reasons"})
    with pytest.raises(SchemaError, match=r"^suppression does not match .*missing column 'reason' \(STRING\), "
                                          r"found 'reasons' instead$"):
        validate_input(day_frame(), DS, RUN, tmp_path, 0.05, related)
    assert not (tmp_path / "data_docs").exists()
