"""Smoke: the uplift training entry point end to end with a tiny budget: simulated logs with a holdout control, the
DR-learner fit, the held-out Qini and true-effect agreement, the gate, promotion, and the saved model scoring a day."""
import numpy as np
import pandas as pd
import pytest

from retention.config import Config
from retention.infra.artifacts import champion_dir, read_metrics
from retention.scoring.uplift import CONTROL, LEVELS, UpliftModel, uplift_columns
from training import train_uplift

DATA = Config().data_dir
FILES = {"uplift_meta.json", "metrics.json", "qini.png", "calibration.png", "test_effects.parquet",
         *(f"effect_{k}_{f}.json" for k in range(LEVELS) for f in range(3))}


def test_train_uplift_tiny_logs_fits_gates_and_promotes(tmp_path, tiny_models):
    risk, accept = tiny_models
    args = ["--artifact-root", str(tmp_path), "--data-dir", DATA, "--profile", "tiny", "--risk-model", str(risk),
            "--accept-model", str(accept)]
    # a bar no model can clear: the gate fails, the job exits 1, nothing is promoted
    assert train_uplift.main(args + ["--min-spearman", "1.01"]) == 1
    assert not (tmp_path / "models" / "uplift" / "champion.json").exists()

    code = train_uplift.main(args + ["--min-spearman", "-1"])
    version = max(p for p in (tmp_path / "models" / "uplift").iterdir() if p.name not in ("champion", "champion.json"))
    assert FILES <= {p.name for p in version.iterdir()}
    m = read_metrics(version)
    rows = m["rows"]
    assert rows["episodes"] == 6 and rows["test_episodes"] == 3 and 0 < rows["train_control"] < rows["train"] / 5
    for level in map(str, range(LEVELS)):
        q = m["qini"]["per_level"][level]
        assert set(q["qini"]) == {"uplift", "accept", "plan_model", "oracle", "random"} and 0 < q["treated"] < q["rows"]
    # in the base world the plan's own model is the truth: its ranking is the oracle's
    assert m["qini"]["mean"]["qini"]["plan_model"] == pytest.approx(m["qini"]["mean"]["qini"]["oracle"])
    gate = m["gate"]
    assert gate["qini_uplift"] == m["qini"]["mean"]["qini"]["uplift"]
    assert gate["passed"] == (gate["qini_beats_accept"] and gate["qini_beats_random"])
    assert -1 <= m["true_effect"]["spearman_pooled"] <= 1 and len(m["true_effect"]["calibration"]["true"]) == 10
    assert code == (0 if gate["passed"] else 1)
    assert champion_dir(tmp_path, "uplift").exists() == gate["passed"]

    # --no-promote only reports
    pointer = tmp_path / "models" / "uplift" / "champion.json"
    before = pointer.read_text() if pointer.exists() else None
    assert train_uplift.main(args + ["--no-promote", "--min-spearman", "-1"]) == 0
    assert (pointer.read_text() if pointer.exists() else None) == before

    # the saved model scores the held-out rows as the run did, and gives the score stage its columns
    model = UpliftModel.load(version)
    effects = pd.read_parquet(version / "test_effects.parquet")
    assert model.version_ == m["version"] and set(effects["arm"]) == {CONTROL, 0, 1, 2, 3}
    columns = uplift_columns(effects, model)
    np.testing.assert_allclose(columns.to_numpy(), effects[list(columns.columns)].to_numpy(), rtol=1e-6)
    assert np.isfinite(effects[[f"true_{k}" for k in range(LEVELS)]].to_numpy()).all()
