"""retention_retrain_rlhf: the message model: SFT, the reward model and the judge in parallel, then PPO-text.

Each task runs one training/ entry point through the runner (local subprocess, or a Vertex AI custom
job on an L4 GPU) and promotes its champion only when its own gate passes. PPO-text starts from the
SFT champion and is scored by the reward-model champion, so it runs only when both were promoted;
it is promoted when it beats SFT by the judge's win rate (a second reward model on pairs the first
never saw, plus the grounding check) within the KL target, shield pass rate no lower. The daily
DAG's generator reads the ppo_text champion.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task
from retention_runner import run_training_job

from retention.infra import jobs
from retention.config import TRAIN_PROFILES, load_config

CFG = load_config()
SFT_CHAMPION = Asset(jobs.champion_uri("sft"))
REWARD_CHAMPION = Asset(jobs.champion_uri("reward"))
JUDGE_CHAMPION = Asset(jobs.champion_uri("judge"))
PPO_TEXT_CHAMPION = Asset(jobs.champion_uri("ppo_text"))


@dag(
    schedule=CFG.retrain_rlhf_schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={"profile": Param(CFG.train_profile, enum=list(TRAIN_PROFILES), description="training budget")},
    tags=["retention", "training"],
    doc_md=__doc__,
)
def retention_retrain_rlhf():
    @task(outlets=[SFT_CHAMPION])
    def train_sft(params=None):
        run_training_job(load_config(params), "train_sft", ["--profile", params["profile"]])

    @task(outlets=[REWARD_CHAMPION])
    def train_reward(params=None):
        run_training_job(load_config(params), "train_reward", ["--profile", params["profile"]])

    @task(outlets=[JUDGE_CHAMPION])
    def train_judge(params=None):
        run_training_job(load_config(params), "train_judge", ["--profile", params["profile"]])

    @task(outlets=[PPO_TEXT_CHAMPION])
    def train_ppo_text(params=None):
        run_training_job(load_config(params), "train_ppo_text", ["--profile", params["profile"]])

    [train_sft(), train_reward(), train_judge()] >> train_ppo_text()


retention_retrain_rlhf()
