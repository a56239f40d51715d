"""Risk one-hot columns, the Bank Marketing <-> customers accept mapping, and the offer-level proxy."""
import numpy as np
import pandas as pd
import pytest

from retention.config import Config
from retention.scoring.features import (ACCEPT_FEATURES, MAPPED_COLUMNS, RISK_FEATURES, accept_features, bank_mapped,
                                bank_offer_level, customer_mapped, read_bank, risk_features)
from retention.datasets.telco import FLAGS


def customer(**overrides) -> dict:
    row = {"customer_id": "c1", "gender": "Female", "tenure_months": 2, "plan": "fiber_optic",
           "contract": "month_to_month", "payment_method": "electronic_check", "monthly_charges": 80.5,
           "total_charges": 161.0, "channel": "email", "contacts_in_window": 0, "days_since_contact": 999,
           "total_contacts": 0, "last_outcome": "nonexistent"}
    row.update({flag: False for flag in FLAGS.values()})
    row.update(overrides)
    return row


def test_risk_columns_are_fixed_whatever_the_rows_hold():
    a = risk_features(pd.DataFrame([customer()]))
    b = risk_features(pd.DataFrame([customer(plan="dsl", contract="two_year", payment_method="credit_card")]))
    assert list(a.columns) == list(b.columns) == list(RISK_FEATURES)
    assert len(RISK_FEATURES) == 3 + 12 + 2 + 3 + 3 + 4
    assert all(dt == np.float64 for dt in a.dtypes)


def test_risk_values_of_a_hand_built_row():
    X = risk_features(pd.DataFrame([customer(tech_support=True, senior_citizen=True)])).iloc[0]
    assert (X["tenure_months"], X["monthly_charges"], X["total_charges"]) == (2.0, 80.5, 161.0)
    assert (X["tech_support"], X["senior_citizen"], X["partner"]) == (1.0, 1.0, 0.0)
    assert X[["plan=dsl", "plan=fiber_optic", "plan=none"]].tolist() == [0.0, 1.0, 0.0]
    assert X[["contract=month_to_month", "contract=one_year", "contract=two_year"]].tolist() == [1.0, 0.0, 0.0]
    assert X[["gender=Female", "gender=Male"]].tolist() == [1.0, 0.0]
    assert X["payment_method=electronic_check"] == 1.0


def test_unknown_category_is_all_zero():
    X = risk_features(pd.DataFrame([customer(plan="satellite")])).iloc[0]
    assert X[["plan=dsl", "plan=fiber_optic", "plan=none"]].tolist() == [0.0, 0.0, 0.0]


def test_nullable_strings_from_bigquery_encode_like_plain_ones():
    day = pd.DataFrame([customer(), customer(plan=None)]).astype({"plan": "string", "contract": "string"})
    X = risk_features(day)
    assert X["plan=fiber_optic"].tolist() == [1.0, 0.0] and X["contract=month_to_month"].tolist() == [1.0, 1.0]


def test_accept_mapping_of_a_hand_built_customer():
    day = pd.DataFrame([customer(channel="phone", contacts_in_window=2, days_since_contact=12, total_contacts=4,
                                 last_outcome="failure", senior_citizen=True)])
    m = customer_mapped(day, "2026-03-04", offer_level=2).iloc[0]  # a Wednesday in March
    assert list(m.index) == list(MAPPED_COLUMNS)
    assert m.to_dict() == {"offer_level": 2, "campaign": 3, "pdays": 12, "previous": 4, "senior": 1,
                           "contact": "telephone", "poutcome": "failure", "month": "mar", "day_of_week": "wed"}


@pytest.mark.parametrize("ds, month, weekday", [
    ("2026-01-03", "dec", "fri"),  # Saturday in January: jan -> dec, sat -> fri
    ("2026-02-08", "mar", "mon"),  # Sunday in February: feb -> mar, sun -> mon
    ("2026-11-24", "nov", "tue"),
])
def test_calendar_mapping(ds, month, weekday):
    m = customer_mapped(pd.DataFrame([customer()]), ds, 0).iloc[0]
    assert (m["month"], m["day_of_week"]) == (month, weekday)


def test_non_phone_channels_are_cellular():
    day = pd.DataFrame([customer(channel=c) for c in ("email", "sms", "app", "phone")])
    assert customer_mapped(day, "2026-05-05", 0)["contact"].tolist() == ["cellular"] * 3 + ["telephone"]


def test_accept_features_of_a_mapped_row():
    day = pd.DataFrame([customer(channel="sms", contacts_in_window=1, days_since_contact=3, total_contacts=1,
                                 last_outcome="success")])
    X = accept_features(customer_mapped(day, "2026-06-05", offer_level=3))  # a Friday in June
    assert list(X.columns) == list(ACCEPT_FEATURES)
    hot = {c for c, v in X.iloc[0].items() if v == 1.0 and "=" in c}
    assert hot == {"contact=cellular", "poutcome=success", "month=jun", "day_of_week=fri"}
    assert X.iloc[0][["offer_level", "campaign", "pdays", "previous", "senior"]].tolist() == [3.0, 2.0, 3.0, 1.0, 0.0]


def test_bank_rows_map_to_the_same_columns():
    bank = pd.DataFrame({"age": [70, 30], "campaign": [1, 4], "pdays": [999, 6], "previous": [0, 2],
                         "poutcome": ["nonexistent", "success"], "contact": ["telephone", "cellular"],
                         "month": ["may", "dec"], "day_of_week": ["mon", "thu"]})
    m = bank_mapped(bank, pd.Series([0, 3]))
    assert m["senior"].tolist() == [1, 0] and m["offer_level"].tolist() == [0, 3]
    assert list(accept_features(m).columns) == list(ACCEPT_FEATURES)


def test_offer_level_is_reversed_euribor_quartile():
    euribor = pd.Series([0.7, 1.0, 1.3, 1.4, 4.8, 4.85, 4.9, 5.0])
    level, edges = bank_offer_level(euribor)
    assert level.tolist() == [3, 3, 2, 2, 1, 1, 0, 0]
    assert len(edges) == 3 and edges == sorted(edges)


def test_read_bank_drops_duration():
    bank = read_bank(Config().data_dir)
    assert bank.shape == (41188, 20) and "duration" not in bank.columns
