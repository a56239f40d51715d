"""Fixtures the training smoke tests share."""
import pytest

from retention.config import Config
from retention.datasets.telco import read_telco
from retention.scoring.accept import MONOTONE, AcceptModel
from retention.scoring.features import accept_features, bank_mapped, bank_offer_level, read_bank, risk_features
from retention.scoring.risk import RiskModel


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Risk and accept models fitted in seconds on the real data, saved the way champions are: (risk, accept) dirs."""
    data = Config().data_dir
    root = tmp_path_factory.mktemp("models")
    telco = read_telco(data)
    X, y = risk_features(telco), telco["churned"].to_numpy(dtype=int)
    RiskModel(n_estimators=30, learning_rate=0.3, early_stopping_rounds=5, random_state=0).fit(
        X[:6000], y[:6000], X[6000:], y[6000:]).save(root / "risk", "tiny-risk")
    bank = read_bank(data).sample(8000, random_state=0)
    Xa = accept_features(bank_mapped(bank, bank_offer_level(bank["euribor3m"])[0]))
    ya = bank["y"].eq("yes").to_numpy(dtype=int)
    AcceptModel(n_estimators=30, learning_rate=0.3, max_depth=3, early_stopping_rounds=5,
                monotone_constraints=MONOTONE, random_state=0).fit(
        Xa[:6400], ya[:6400], Xa[6400:], ya[6400:]).save(root / "accept", "tiny-accept")
    return root / "risk", root / "accept"
