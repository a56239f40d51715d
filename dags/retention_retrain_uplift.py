"""retention_retrain_uplift: retrain the treatment-effect (uplift) model once enough new outcomes are in.

Weekly (Config.retrain_uplift_schedule). The first task counts the `outcomes` rows of the plans made since the uplift
champion was promoted and skips the run below Config.uplift_min_new_outcomes (with no champion yet, every row
counts). The job (training/train_uplift.py) runs through the runner, a local subprocess or a Vertex AI CPU custom
job, and promotes the model only when its held-out Qini beats the accept ranking and random and its effect agrees
with the simulator's true effect; otherwise the task fails and the champion stays as it was.
"""
from __future__ import annotations

import logging

import pendulum
from airflow.sdk import Asset, Param, dag, task
from retention_runner import run_training_job

from retention.config import TRAIN_PROFILES, load_config
from retention.infra import jobs

CFG = load_config()
UPLIFT_CHAMPION = Asset(jobs.champion_uri("uplift"))
log = logging.getLogger(__name__)


@dag(
    schedule=CFG.retrain_uplift_schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={"profile": Param(CFG.train_profile, enum=list(TRAIN_PROFILES), description="training budget")},
    tags=["retention", "training"],
    doc_md=__doc__,
)
def retention_retrain_uplift():
    @task.short_circuit
    def enough_new_outcomes(params=None) -> bool:
        from retention.infra import bq
        from retention.pipeline.outcomes import new_since_champion

        cfg = load_config(params)
        rows = new_since_champion(bq.client(cfg), cfg, "uplift")
        log.info("%d new outcomes since the uplift champion; retrain from %d", rows, cfg.uplift_min_new_outcomes)
        return rows >= cfg.uplift_min_new_outcomes

    @task(outlets=[UPLIFT_CHAMPION])
    def train_uplift(params=None):
        run_training_job(load_config(params), "train_uplift", ["--profile", params["profile"]])

    enough_new_outcomes() >> train_uplift()


retention_retrain_uplift()
