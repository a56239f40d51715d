"""The real Great Expectations suites on hand-built day and plan frames: rejects, thresholds, Data Docs, plan gates."""
import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from retention.config import Config
from retention.quality import (PlanInvalidError, RejectShareError, SchemaError, check_schema,
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
    assert summary["rejected_rows"] == 0 and summary["evaluated_expectations"] == 20
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
        "send_at": pd.to_datetime(["2024-06-01T14:00:00Z"] * N), "shield_checks": "{}", "generator": "template",
    })
    check_schema(df, "contact_plan")
    return df


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
