"""retention_retrain_policy: retrain the constrained PPO decision policy once both tabular champions are new.

Scheduled on the risk and accept champion Assets (both must have been promoted since the last run),
so a policy always trains on the scores the daily plan will give it. The job runs through the
runner (local subprocess, or a Vertex AI CPU custom job) and promotes the policy only when it beats
every baseline with zero hard-rule violations; otherwise the task fails and the champion stays.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task
from retention_runner import run_training_job

from retention.infra import jobs
from retention.config import TRAIN_PROFILES, load_config

CFG = load_config()
TABULAR_CHAMPIONS = Asset(jobs.champion_uri("risk")) & Asset(jobs.champion_uri("accept"))
POLICY_CHAMPION = Asset(jobs.champion_uri("policy"))


@dag(
    schedule=TABULAR_CHAMPIONS,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={"profile": Param(CFG.train_profile, enum=list(TRAIN_PROFILES), description="training budget")},
    tags=["retention", "training"],
    doc_md=__doc__,
)
def retention_retrain_policy():
    @task(outlets=[POLICY_CHAMPION])
    def train_policy(params=None):
        run_training_job(load_config(params), "train_policy", ["--profile", params["profile"]])

    train_policy()


retention_retrain_policy()
