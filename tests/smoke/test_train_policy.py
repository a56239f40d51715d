"""Smoke: the policy training entry point end to end with a tiny budget: artifacts, the evaluation table, the gate,
promotion, and the saved policy planning a real scored day under the hard rules."""
import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from retention.deciding.decide import decide_plan
from retention.deciding import rules
from retention.infra.artifacts import champion_dir, read_metrics
from retention.config import Config
from retention.simulation.simulator import telco_cohort
from retention.deciding.policy import load_policy
from training import train_policy

DATA = Config().data_dir
FILES = {"policy.pt", "policy.json", "metrics.json", "evaluation.txt", "training_log.csv", "learning_curve.png"}
KEYS = {"policy", "net_revenue_retained", "roi", "contact_rate", "retained_customers", "violations_before",
        "violations_after"}


def test_train_policy_tiny_writes_evaluates_gates_and_promotes(tmp_path, tiny_models):
    risk, accept = tiny_models
    args = ["--artifact-root", str(tmp_path), "--data-dir", DATA, "--profile", "tiny", "--risk-model", str(risk),
            "--accept-model", str(accept)]
    code = train_policy.main(args)
    (version,) = [p for p in (tmp_path / "models" / "policy").iterdir() if p.name not in ("champion", "champion.json")]
    assert FILES <= {p.name for p in version.iterdir()}
    m = read_metrics(version)
    assert list(m["evaluation"]) == ["base", "no_history", "fatigue", "backfire"]
    for world, evaluation in m["evaluation"].items():
        rows = {r["policy"]: r for r in evaluation}
        assert list(rows) == ["ppo", "no_contact", "top_risk", "greedy_ev", "greedy_ev_followup", "dp", "random",
                              "dp_oracle"]
        assert all(KEYS <= set(r) and r["violations_after"] == 0 for r in rows.values())
        assert rows["no_contact"]["net_revenue_retained"] == 0
        verdict = m["gate"]["worlds"][world]
        strongest = max(train_policy.BASELINES, key=lambda b: rows[b][train_policy.MONEY])
        assert verdict["strongest_rule"] == strongest
        assert verdict["passed"] == (verdict["margin"]["low"] > 0)
    assert m["gate"]["passed"] == all(w["passed"] for w in m["gate"]["worlds"].values())
    # promoted either way: the network when it passed, else the rule it names
    assert code == 0 and champion_dir(tmp_path, "policy").exists()
    assert m["champion"] == ("ppo" if m["gate"]["passed"] else json.loads((version / "rule.json").read_text())["rule"])
    log = pd.read_csv(version / "training_log.csv")
    assert len(log) == 2 and log["pg_loss"].notna().all() and (log["lambda_cooldown"] >= 0).all()
    assert "greedy_ev" in (version / "evaluation.txt").read_text()

    # --no-promote only reports; with use_uplift on (the simulated days have no uplift scores) it trains too
    champion = (tmp_path / "models" / "policy" / "champion.json").read_text()
    assert train_policy.main(args + ["--no-promote", "--iterations", "1"]) == 0
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RETENTION_USE_UPLIFT", "1")
        assert train_policy.main(args + ["--no-promote", "--iterations", "1"]) == 0
    assert (tmp_path / "models" / "policy" / "champion.json").read_text() == champion

    # the saved network plans a real scored day: rules held, holdout untouched, propensities logged
    (version / "rule.json").unlink(missing_ok=True)
    policy = load_policy(version)
    assert policy.version == m["version"]
    cfg = Config(daily_budget=2000.0)
    day = telco_cohort(DATA, risk, accept, dt.date(2026, 5, 4), 3, cfg)
    planned = decide_plan(day, cfg, policy, "2026-05-04")
    assert rules.violations(planned, cfg) == dict.fromkeys(rules.violations(planned, cfg), 0)
    assert not planned.loc[planned["holdout"], "contact"].any() and planned["contact"].sum() > 0
    assert ((planned["propensity"] > 0) & (planned["propensity"] <= 1)).all()
    assert (planned["policy_model"] == m["version"]).all()
    followups = [0, *range(cfg.cooldown_days, cfg.cooldown_days + 7)]
    assert np.isin(planned.loc[planned["contact"], "followup_days"], followups).all()
