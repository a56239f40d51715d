"""Off-policy evaluation from the warehouse: days planned by the champion through the daily stages with simulated
outcomes in between, the outcomes rerun without duplicates, and the champion's estimate from contact_plan and
contact_history within 10 % of its simulated truth."""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import datetime as dt

import numpy as np
import pandas as pd
import pytest

import days
from retention.infra import bq
from retention import cli
from retention.simulation import ope
from retention.pipeline import outcomes
from retention.scoring.accept import AcceptModel
from retention.simulation.simulator import AcceptTable
from retention.deciding.policy import load_policy

START = dt.date(2026, 10, 5)
DAYS = [START + dt.timedelta(days=i) for i in range(4)]
END = DAYS[-1]
PREFIX = "OPE-"
N = 80


@pytest.fixture(scope="module")
def seeded(bq_client, cfg, champions):
    with days.seeded(bq_client, cfg, PREFIX, N, DAYS, start=600) as rows:
        yield rows


def _history(client, cfg) -> pd.DataFrame:
    """This module's contact_history rows of the planned days."""
    return bq.query(client, cfg, f"SELECT * FROM `{cfg.table('contact_history')}` WHERE contact_date BETWEEN @a AND "
                                 "@b AND STARTS_WITH(customer_id, @prefix) ORDER BY contact_date, customer_id",
                    a=START, b=END, prefix=PREFIX)


def _window(**extra) -> argparse.Namespace:
    return argparse.Namespace(start=START.isoformat(), end=END.isoformat(), **extra)


@pytest.fixture
def network_cfg(cfg, champions, tmp_path):
    """The config with the policy champion's trained network as the policy: the champion may be the rule the gate
    chose instead (rule.json), and a deterministic rule logs propensity 1, nothing an importance weight can use."""
    network = tmp_path / "network"
    shutil.copytree(champions["policy"], network)
    (network / "rule.json").unlink(missing_ok=True)
    return dataclasses.replace(cfg, policy_model_uri=str(network))


def test_champion_estimate_from_the_warehouse_is_within_10_percent_of_its_simulated_truth(seeded, bq_client,
                                                                                          network_cfg, capsys):
    cfg = network_cfg
    # each day planned, then its outcomes simulated, before the next day's extract reads them
    cli.cmd_simulate_outcomes(cfg, _window(plan=True))
    first = _history(bq_client, cfg)
    plans = bq.query(bq_client, cfg, f"SELECT plan_date, customer_id FROM `{cfg.table('contact_plan')}` "
                                     "WHERE plan_date BETWEEN @a AND @b AND contact", a=START, b=END)
    assert len(first) == len(plans) > 0 and (first["plan_date"] == first["contact_date"]).all()
    assert first["accepted"].notna().all() and first["churned"].notna().all()

    # a rerun replaces each day's slice with the same rows: nothing duplicated
    cli.cmd_simulate_outcomes(cfg, _window(plan=False))
    pd.testing.assert_frame_equal(_history(bq_client, cfg), first)

    # the champion's decisions rebuilt from the warehouse get weight 1: the states are the ones it decided in
    target = load_policy(cfg.model_dir("policy"))
    logs = ope.logged_decisions(ope.logged_data(bq_client, cfg, START, END), cfg, target)
    assert set(logs["policy_model"]) == {target.version} and logs["day"].nunique() == len(DAYS)
    np.testing.assert_allclose(logs["target_propensity"], logs["propensity"], rtol=1e-6)

    est = ope.estimate(logs, n_boot=200).set_index("estimator")
    table = AcceptTable(AcceptModel.load(cfg.model_dir("accept")))
    truth = outcomes.replay_value(bq_client, cfg, target, table, START, END)
    assert truth > 0
    assert abs(est.loc["snips", "value"] / truth - 1) < 0.10, (est.loc["snips", "value"], truth)
    # DR's reward model adds the noise of q at the logged actions around its mean: within the interval is enough
    assert est.loc["dr", "lo"] <= truth <= est.loc["dr", "hi"]
    assert np.isfinite(est[["lo", "hi"]].to_numpy()).all() and (est["lo"] <= est["hi"]).all()
    assert (est["ess"] > 0).all()

    # the command prints the same estimates with the truth and the relative error
    capsys.readouterr()
    cli.cmd_ope(cfg, _window(policy="", truth=True, n_boot=200, seed=0, simulate=False))
    out = capsys.readouterr().out
    assert "rel_error" in out and f"target {target.version}" in out
