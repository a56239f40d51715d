"""Seed data: contract columns, stable per-customer attributes, history cases, synthetic marginals."""
import datetime as dt
import json
import zoneinfo

import numpy as np
import pandas as pd
import pytest

from retention.datasets import seed
from retention.config import REPO_ROOT, Config
from retention.datasets.telco import FLAGS, read_telco

DS = dt.date(2025, 3, 10)


def contract_fields(table):
    return [f["name"] for f in json.loads((REPO_ROOT / "sql" / "schema" / f"{table}.json").read_text())["fields"]]


@pytest.fixture(scope="module")
def telco():
    return read_telco(Config().data_dir)


@pytest.fixture(scope="module")
def customers(telco):
    return seed.customers_from_telco(telco, DS)


def tiny_telco():
    """Three Telco-shaped rows, as read_telco returns them."""
    rows = pd.DataFrame({
        "customer_id": ["7590-VHVEG", "5575-GNVDE", "3668-QPYBK"],
        "gender": ["Female", "Male", "Male"],
        "tenure_months": [1, 34, 2],
        "plan": ["dsl", "dsl", "none"],
        "contract": ["month_to_month", "one_year", "two_year"],
        "payment_method": ["electronic_check", "mailed_check", "credit_card"],
        "monthly_charges": [29.85, 56.95, 19.10],
        "total_charges": [29.85, 1889.5, 38.2],
    })
    for i, flag in enumerate(FLAGS.values()):
        rows[flag] = [i % 2 == 0, i % 3 == 0, False]
    rows["churned"] = [False, True, False]
    return rows


def features(history, ds):
    """The per-customer history features the extract SQL computes."""
    days = np.array([(ds - d).days for d in history["contact_date"]])
    h = history.assign(days=days, in_window=days < 30)
    return h.groupby("customer_id").agg(last=("days", "min"), window=("in_window", "sum"),
                                        accepted=("accepted", "any"))


def test_columns_follow_the_data_contract(customers):
    assert list(seed.CUSTOMER_COLUMNS) == contract_fields("customers")
    assert list(seed.HISTORY_COLUMNS) == contract_fields("contact_history")
    assert list(seed.SUPPRESSION_COLUMNS) == contract_fields("suppression")
    assert list(customers.columns) == contract_fields("customers")
    assert list(seed.history_for(customers, DS, 0).columns) == contract_fields("contact_history")
    assert list(seed.suppression_for(customers, DS, 0).columns) == contract_fields("suppression")


def test_customers_from_tiny_telco_exact():
    out = seed.customers_from_telco(tiny_telco(), DS)
    assert out["snapshot_date"].tolist() == [DS] * 3
    assert all(type(d) is dt.date for d in out["snapshot_date"])
    assert out["customer_value"].tolist() == [12 * 29.85, 12 * 56.95, 12 * 19.10]
    # pinned: a change here means every seeded customer changed name, zone or channel
    assert out["name"].tolist() == ["Jasmine", "Andre", "Anthony"]
    assert out["time_zone"].tolist() == ["America/Los_Angeles", "America/Los_Angeles", "America/Chicago"]
    assert out["channel"].tolist() == ["app", "email", "email"]
    assert out["tenure_months"].tolist() == [1, 34, 2]
    assert "churned" not in out


def test_attributes_are_stable_and_independent_of_row_order():
    rows = tiny_telco()
    first = seed.customers_from_telco(rows, DS).set_index("customer_id")
    shuffled = seed.customers_from_telco(rows.iloc[[2, 0, 1]], DS + dt.timedelta(days=5)).set_index("customer_id")
    cols = ["name", "time_zone", "channel", "customer_value"]
    pd.testing.assert_frame_equal(first.loc[shuffled.index, cols], shuffled[cols])
    alone = seed.customers_from_telco(rows.iloc[[1]], DS).set_index("customer_id")
    pd.testing.assert_frame_equal(first.loc[alone.index, cols], alone[cols])


def test_attribute_vocabularies_on_telco(customers):
    assert len(customers) == 7043
    assert customers["customer_value"].equals(12 * customers["monthly_charges"])
    assert set(customers["channel"]) == {"email", "sms", "phone", "app"}
    assert set(customers["time_zone"]) == set(seed.TIME_ZONES)
    for zone in seed.TIME_ZONES:
        zoneinfo.ZoneInfo(zone)
    half_hour = customers["time_zone"].isin(["Asia/Kolkata", "America/St_Johns", "Australia/Adelaide"])
    assert half_hour.sum() >= 100
    female = customers["gender"] == "Female"
    assert customers.loc[female, "name"].isin(seed.FEMALE_NAMES).all()
    assert customers.loc[~female, "name"].isin(seed.MALE_NAMES).all()
    assert customers["name"].nunique() == 200


def test_history_has_every_interesting_case(customers):
    history = seed.history_for(customers, DS, 0)
    f = features(history, DS)
    assert (f["last"] < 7).sum() >= 50                        # inside the cooldown
    assert (f["window"] >= 3).sum() >= 50                     # at the fatigue cap
    assert ((f["window"] >= 3) & (f["last"] >= 7)).sum() >= 30  # fatigue binds alone
    assert f["accepted"].sum() >= 50                          # prior acceptances
    assert (f["window"] == 0).sum() >= 50                     # lapsed: contacted only before the window
    assert len(f) < 0.4 * len(customers)                      # most never contacted
    assert history["customer_id"].isin(customers["customer_id"]).all()


def test_history_rows_are_well_formed(customers):
    history = seed.history_for(customers, DS, 0)
    days = np.array([(DS - d).days for d in history["contact_date"]])
    assert days.min() == 1 and days.max() == 60
    assert (history["plan_date"] == history["contact_date"]).all()
    assert set(history["offer_level"]) == {0, 1, 2, 3}
    assert history["accepted"].dtype == bool
    assert (history["churned"].isna() == (days < seed.OUTCOME_DAYS)).all()
    assert not history.duplicated(["customer_id", "contact_date"]).any()
    assert (np.diff(days) <= 0).all()  # ordered by contact_date


def test_suppression_rows(customers):
    sup = seed.suppression_for(customers, DS, 0)
    assert 30 <= len(sup) <= 120
    assert set(sup["reason"]) == {"opt_out", "complaint", "legal"}
    assert all(type(d) is dt.date and d < DS for d in sup["since"])
    assert sup["customer_id"].is_unique and sup["customer_id"].isin(customers["customer_id"]).all()


def test_seeded_tables_are_deterministic_per_ds(customers):
    pd.testing.assert_frame_equal(seed.history_for(customers, DS, 0), seed.history_for(customers, DS, 0))
    pd.testing.assert_frame_equal(seed.suppression_for(customers, DS, 0), seed.suppression_for(customers, DS, 0))
    other = seed.history_for(customers, DS + dt.timedelta(days=1), 0)
    assert not other["customer_id"].equals(seed.history_for(customers, DS, 0)["customer_id"])
    assert seed.seed_rng(DS, 7).random() == seed.seed_rng(DS, 7).random()
    assert seed.seed_rng(DS, 7).random() != seed.seed_rng(DS, 7, stream=1).random()


def test_synthetic_customers_match_telco_marginals(telco):
    syn = seed.synthetic_customers(100_000, DS, 0, telco)
    assert list(syn.columns) == contract_fields("customers")
    assert syn["customer_id"].iloc[0] == "SYN-0000001" and syn["customer_id"].iloc[-1] == "SYN-0100000"
    assert syn["customer_id"].is_unique
    assert syn.dtypes.equals(seed.customers_from_telco(telco, DS).dtypes)
    for col in ["plan", "contract", "payment_method", "gender"]:
        diff = syn[col].value_counts(normalize=True) - telco[col].value_counts(normalize=True)
        assert diff.abs().max() < 0.02, col
    for col in ["monthly_charges", "total_charges", "tenure_months"]:
        assert syn[col].mean() == pytest.approx(telco[col].mean(), rel=0.03), col
    flags = list(FLAGS.values())
    assert (syn[flags].mean() - telco[flags].mean()).abs().max() < 0.02


def test_synthetic_customers_are_consistent(telco):
    syn = seed.synthetic_customers(20_000, DS, 3, telco)
    no_internet = syn["plan"] == "none"
    online = ["online_security", "online_backup", "device_protection", "tech_support", "streaming_tv",
              "streaming_movies"]
    assert not syn.loc[no_internet, online].to_numpy().any()
    assert not (syn["multiple_lines"] & ~syn["phone_service"]).any()
    assert (syn.loc[syn["tenure_months"] == 0, "total_charges"] == 0).all()
    for plan, rows in syn.groupby("plan"):
        ref = telco.loc[telco["plan"] == plan, "monthly_charges"]
        assert rows["monthly_charges"].between(ref.min(), ref.max()).all(), plan
    assert syn["customer_value"].equals(12 * syn["monthly_charges"])
    pd.testing.assert_frame_equal(syn, seed.synthetic_customers(20_000, DS, 3, telco))


def test_the_demo_channel_mix_covers_exactly_the_contract_channels():
    from retention.config import CHANNELS
    from retention.datasets.seed import CHANNEL_SHARES

    assert sorted(CHANNEL_SHARES) == sorted(CHANNELS) and abs(sum(CHANNEL_SHARES.values()) - 1) < 1e-12
