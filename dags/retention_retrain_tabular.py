"""retention_retrain_tabular: retrain the risk and accept models; each promotes itself when its gate passes.

Each task runs one training/ entry point (a local subprocess on the embedded default). A model
that fails its gate fails its task and the champion stays as it was.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task
from retention_runner import run_training_job

from retention.config import load_config

RISK_CHAMPION = Asset("retention://models/risk/champion")
ACCEPT_CHAMPION = Asset("retention://models/accept/champion")


@dag(
    schedule="0 2 * * 0",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={"profile": Param("quick", enum=["quick", "full"], description="training budget")},
    tags=["retention", "training"],
    doc_md=__doc__,
)
def retention_retrain_tabular():
    @task(outlets=[RISK_CHAMPION])
    def train_risk(params=None):
        run_training_job(load_config(params), "train_risk", ["--profile", params["profile"]])

    @task(outlets=[ACCEPT_CHAMPION])
    def train_accept(params=None):
        run_training_job(load_config(params), "train_accept", ["--profile", params["profile"]])

    train_risk()
    train_accept()


retention_retrain_tabular()
