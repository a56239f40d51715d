"""Smoke: each tabular training entry point end to end with a tiny budget; slow: the quick profile passes the gates."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from retention.scoring.accept import AcceptModel
from retention.infra.artifacts import champion_dir, new_version, promote, read_metrics, version_dir
from retention.scoring.calibration import ece
from retention.config import Config
from retention.scoring.risk import RiskModel
from training import train_accept, train_risk

DATA = Config().data_dir
FILES = {"model.json", "calibrator.joblib", "model_meta.json", "metrics.json", "test_predictions.parquet",
         "reliability.png", "importance.png"}


def only_version(root, name):
    (version,) = [p for p in (root / "models" / name).iterdir() if p.name != "champion"]
    return version


def check_run(directory, rows: int) -> dict:
    """Files written; the OOF predictions cover every row; AUC and ECE recomputed from them match metrics.json."""
    assert FILES <= {p.name for p in directory.iterdir()}
    m = read_metrics(directory)
    preds = pd.read_parquet(directory / "test_predictions.parquet")
    assert list(preds.columns) == ["id", "label", "p_raw", "p_cal"] and len(preds) == rows
    assert preds["id"].is_unique
    assert roc_auc_score(preds["label"], preds["p_cal"]) == pytest.approx(m["oof"]["auc"], abs=1e-12)
    assert roc_auc_score(preds["label"], preds["p_raw"]) == pytest.approx(m["oof"]["auc_raw"], abs=1e-12)
    assert ece(preds["label"], preds["p_cal"]) == pytest.approx(m["oof"]["ece"], abs=1e-12)
    assert m["rows"]["train"] + m["rows"]["validation"] + m["rows"]["test"] == rows
    assert {"auc", "ece", "brier", "precision@0.5", "recall@0.7"} <= set(m["test"])
    assert set(m["gate"]) == {"min_auc", "max_ece", "auc", "ece", "passed"}
    return m


def test_train_risk_tiny_gate_fail_then_pass(tmp_path):
    args = ["--artifact-root", str(tmp_path), "--data-dir", DATA, "--profile", "tiny"]
    assert train_risk.main(args + ["--min-auc", "0.999"]) == 1  # gate fails: non-zero, nothing promoted
    m = check_run(only_version(tmp_path, "risk"), rows=7043)
    assert m["gate"]["passed"] is False and m["model"] == "risk"
    assert not champion_dir(tmp_path, "risk").exists()

    assert train_risk.main(args + ["--min-auc", "0", "--max-ece", "1"]) == 0
    champion = champion_dir(tmp_path, "risk")
    model = RiskModel.load(champion)
    assert model.version_ == read_metrics(champion)["version"]
    assert read_metrics(version_dir(tmp_path, "risk", model.version_)) == read_metrics(champion)


def test_train_accept_tiny(tmp_path):
    args = ["--artifact-root", str(tmp_path), "--data-dir", DATA, "--profile", "tiny", "--no-promote"]
    assert train_accept.main(args + ["--min-auc", "0.999"]) == 0  # --no-promote only reports
    assert not champion_dir(tmp_path, "accept").exists()
    directory = only_version(tmp_path, "accept")
    m = check_run(directory, rows=41188)
    assert m["params"]["monotone_constraints"] == {"offer_level": 1}
    offers = m["offer_level"]
    assert sum(offers["rows"].values()) == 41188 and len(offers["euribor3m_edges"]) == 3
    assert offers["acceptance_rate"]["3"] > offers["acceptance_rate"]["0"]
    assert 0.5 < m["full_feature_reference"]["test_auc"] <= 1
    assert AcceptModel.load(directory).features_[0] == "offer_level"


def test_versions_sort_by_time_and_promote_swaps(tmp_path):
    first, second = new_version(), new_version()
    assert len(first) == len("20260101T000000Z-abcdef") and first[:16] <= second[:16] and first != second
    for version, payload in ((first, "old"), (second, "new")):
        directory = version_dir(tmp_path, "risk", version)
        directory.mkdir(parents=True)
        (directory / "metrics.json").write_text(json.dumps({"version": payload}))
        promote(tmp_path, "risk", version)
        assert read_metrics(champion_dir(tmp_path, "risk")) == {"version": payload}
    assert sorted(p.name for p in (tmp_path / "models" / "risk").iterdir()) == sorted([first, second, "champion", "champion.json"])
    with pytest.raises(FileNotFoundError):
        promote(tmp_path, "risk", "missing")


@pytest.mark.slow
@pytest.mark.parametrize("job, name, rows, min_auc, max_ece", [
    (train_risk, "risk", 7043, 0.84, 0.03),
    (train_accept, "accept", 41188, 0.75, 0.015),
])
def test_quick_profile_passes_the_real_gates(tmp_path, job, name, rows, min_auc, max_ece):
    assert job.main(["--artifact-root", str(tmp_path), "--data-dir", DATA, "--profile", "quick"]) == 0
    # wall time is the benchmarks' business (bench/), not a test's: the machine may be shared
    champion = champion_dir(tmp_path, name)
    m = check_run(champion, rows)
    preds = pd.read_parquet(champion / "test_predictions.parquet")
    assert roc_auc_score(preds["label"], preds["p_cal"]) >= min_auc
    assert ece(preds["label"], preds["p_cal"]) <= max_ece
    assert m["gate"] == {"min_auc": min_auc, "max_ece": max_ece, "auc": m["oof"]["auc"], "ece": m["oof"]["ece"],
                         "passed": True}
    assert np.isfinite(m["test"]["auc"]) and m["test"]["auc"] >= min_auc
