"""retention_retrain_tabular: retrain the risk and accept models; each promotes itself when its gate passes.

Each task runs one training/ entry point through the runner: a local subprocess on the embedded
default, a Vertex AI custom job on a CPU machine in production (runner and schedule from the Config).
A model that passes its gate moves its champion pointer (retention/infra/artifacts.py); one that fails fails
its task, the champion stays as it was and its Asset is not updated (retention_retrain_policy
waits for both champions).
"""
from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task
from retention_runner import run_training_job

from retention.infra import jobs
from retention.config import TRAIN_PROFILES, load_config

CFG = load_config()
RISK_CHAMPION = Asset(jobs.champion_uri("risk"))
ACCEPT_CHAMPION = Asset(jobs.champion_uri("accept"))


@dag(
    schedule=CFG.retrain_tabular_schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={"profile": Param(CFG.train_profile, enum=list(TRAIN_PROFILES), description="training budget")},
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
