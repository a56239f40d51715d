"""Vertex AI job specs: the real aiplatform SDK builds and submits them; a fake JobService answers; no network.
And the stage entry point the generation job runs."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1.types import AcceleratorType

from retention.pipeline import daily, stage
from retention.infra import jobs, vertex
from retention.config import REPO_ROOT, load_config
from tests.fake_vertex import PRODUCTION_ENV, FakeJobService, install, no_network  # noqa: F401

CFG = load_config(env=PRODUCTION_ENV)
ARTIFACTS = "/gcs/us-central1-retention-1a2b3c-bucket/data/artifacts"
DATA = "/gcs/us-central1-retention-1a2b3c-bucket/data/datasets"
CPU_JOBS = ("train_risk", "train_accept", "train_policy", "train_uplift")
GPU_JOBS = ("train_sft", "train_reward", "train_judge", "train_ppo_text")


def _job(job: str, cfg=CFG, extra=("--profile", "full")):
    return vertex.training_job(cfg, job, list(extra), credentials=AnonymousCredentials())


def test_fuse_path():
    assert vertex.fuse_path("gs://bucket/data/artifacts/") == "/gcs/bucket/data/artifacts"
    with pytest.raises(ValueError):
        vertex.fuse_path("/tmp/artifacts")


def test_every_job_has_a_machine_and_cpu_gpu_split():
    assert set(jobs.JOBS) == set(CPU_JOBS + GPU_JOBS)
    assert [jobs.MACHINES[j].gpu for j in CPU_JOBS + GPU_JOBS] == [False] * len(CPU_JOBS) + [True] * len(GPU_JOBS)
    assert jobs.GENERATION.gpu and jobs.GENERATION.accelerator_type == "NVIDIA_L4"


@pytest.mark.parametrize("job", CPU_JOBS)
def test_cpu_job_spec(job):
    custom_job = _job(job)
    (pool,) = custom_job.job_spec.worker_pool_specs
    assert pool.machine_spec.machine_type == "n2-standard-8"
    assert pool.machine_spec.accelerator_type == AcceleratorType.ACCELERATOR_TYPE_UNSPECIFIED
    assert pool.machine_spec.accelerator_count == 0 and pool.replica_count == 1
    assert pool.container_spec.image_uri == PRODUCTION_ENV["RETENTION_TRAIN_IMAGE_CPU"]
    assert list(pool.container_spec.command) == ["python", "-m", f"training.{job}"]
    assert list(pool.container_spec.args) == ["--artifact-root", ARTIFACTS, "--data-dir", DATA, "--profile", "full"]


@pytest.mark.parametrize("job", GPU_JOBS)
def test_gpu_job_spec(job):
    (pool,) = _job(job).job_spec.worker_pool_specs
    assert pool.machine_spec.machine_type == "g2-standard-8"
    assert pool.machine_spec.accelerator_type == AcceleratorType.NVIDIA_L4
    assert pool.machine_spec.accelerator_count == 1
    assert pool.container_spec.image_uri == PRODUCTION_ENV["RETENTION_TRAIN_IMAGE_GPU"]
    assert list(pool.container_spec.command) == ["python", "-m", f"training.{job}"]
    assert list(pool.container_spec.args)[:4] == ["--artifact-root", ARTIFACTS, "--data-dir", DATA]


RUN_ID = "scheduled__2026-03-08T05:00:00+00:00"


def test_generation_stage_job_runs_on_an_l4_from_the_gpu_image():
    cfg = load_config({"generator": "vllm", "base_model": "Qwen/Qwen2.5-1.5B-Instruct"}, env=PRODUCTION_ENV)
    job = vertex.stage_job(cfg, "generate", "2026-03-08", RUN_ID, credentials=AnonymousCredentials())
    (pool,) = job.job_spec.worker_pool_specs
    assert pool.machine_spec.machine_type == "g2-standard-8"
    assert pool.machine_spec.accelerator_type == AcceleratorType.NVIDIA_L4
    assert pool.machine_spec.accelerator_count == 1 and pool.replica_count == 1
    assert pool.container_spec.image_uri == PRODUCTION_ENV["RETENTION_TRAIN_IMAGE_GPU"]
    assert list(pool.container_spec.command) == ["python", "-m", "retention.pipeline.stage"]
    assert list(pool.container_spec.args) == ["generate", "--ds", "2026-03-08", "--run-id", RUN_ID]
    assert {e.name: e.value for e in pool.container_spec.env} == {
        "RETENTION_ARTIFACT_ROOT": ARTIFACTS, "RETENTION_DATA_DIR": DATA, "RETENTION_BQ_ENDPOINT": "",
        "RETENTION_PROJECT": "acme-retention", "RETENTION_BASE_MODEL": "Qwen/Qwen2.5-1.5B-Instruct",
        "RETENTION_GENERATOR": "vllm",
    }


def test_submitted_generation_job_runs_as_the_service_account_for_at_most_two_hours(monkeypatch, no_network):
    service = install(monkeypatch, FakeJobService())
    cfg = load_config({"generator": "vllm"}, env=PRODUCTION_ENV)
    vertex.stage_job(cfg, "generate", "2026-03-08", RUN_ID).run(**vertex.run_kwargs(cfg, jobs.GENERATION))
    sent = service.spec("retention-generate")
    assert sent.job_spec.service_account == PRODUCTION_ENV["RETENTION_VERTEX_SERVICE_ACCOUNT"]
    assert sent.job_spec.scheduling.timeout.total_seconds() == 2 * 3600
    assert dict(sent.labels) == {"app": "retention-planner", "job": "generate"}


def test_stage_cli_runs_one_stage_and_reports_its_summary(tmp_path, monkeypatch, capsys):
    calls = []

    def generate(cfg, ds, run_id):
        calls.append((cfg, ds, run_id))
        return {"messages": 3}

    monkeypatch.setattr(daily, "generate", generate)
    monkeypatch.setenv("RETENTION_ARTIFACT_ROOT", str(tmp_path))
    monkeypatch.setenv("RETENTION_GENERATOR", "vllm")
    cfg = load_config()
    cfg.run_dir("2026-03-08", RUN_ID).mkdir(parents=True)
    assert stage.main(["generate", "--ds", "2026-03-08", "--run-id", RUN_ID]) == 0
    assert calls == [(cfg, "2026-03-08", RUN_ID)]
    assert json.loads(capsys.readouterr().out) == {"messages": 3}
    assert json.loads(stage.summary_path(cfg, "2026-03-08", RUN_ID, "generate").read_text()) == {"messages": 3}


def test_stage_cli_help_and_choices():
    result = subprocess.run([sys.executable, "-m", "retention.pipeline.stage", "--help"], capture_output=True, text=True,
                            cwd=REPO_ROOT)
    assert result.returncode == 0 and "--run-id" in result.stdout and "generate" in result.stdout
    assert stage.STAGES == daily.STAGES[:-1]
    with pytest.raises(ValueError, match="unknown stage 'publish'"):
        stage.run_in_process(CFG, "publish", "2026-03-08", RUN_ID)


def test_local_and_vertex_arguments_differ_only_in_paths():
    local = jobs.common_args(CFG) + ["--profile", "full"]
    remote = vertex.job_arguments(CFG, ["--profile", "full"])
    assert local[0::2] == remote[0::2] and local[4:] == remote[4:]
    assert local[1] == "/home/airflow/gcs/data/artifacts" and remote[1] == ARTIFACTS


def test_container_env_carries_the_tasks_config_with_job_paths():
    cfg = load_config({"base_model": "Qwen/Qwen2.5-1.5B-Instruct", "generator": "vllm"}, env=PRODUCTION_ENV)
    (pool,) = _job("train_sft", cfg).job_spec.worker_pool_specs
    env = {e.name: e.value for e in pool.container_spec.env}
    assert env == {
        "RETENTION_ARTIFACT_ROOT": ARTIFACTS, "RETENTION_DATA_DIR": DATA, "RETENTION_BQ_ENDPOINT": "",
        "RETENTION_PROJECT": "acme-retention", "RETENTION_BASE_MODEL": "Qwen/Qwen2.5-1.5B-Instruct",
        "RETENTION_GENERATOR": "vllm",
    }


def test_submitted_job_carries_service_account_timeout_and_output_dir(monkeypatch, no_network):
    service = install(monkeypatch, FakeJobService())
    custom_job = _job("train_ppo_text")
    custom_job.run(**vertex.run_kwargs(CFG, jobs.MACHINES["train_ppo_text"]))
    ((parent, sent),) = service.created
    assert parent == "projects/acme-retention/locations/us-central1"
    assert sent.display_name == "retention-train_ppo_text"
    assert sent.job_spec.service_account == PRODUCTION_ENV["RETENTION_VERTEX_SERVICE_ACCOUNT"]
    assert sent.job_spec.scheduling.timeout.total_seconds() == 12 * 3600
    assert sent.job_spec.base_output_directory.output_uri_prefix.startswith("gs://acme-retention-vertex/")
    assert dict(sent.labels) == {"app": "retention-planner", "job": "train-ppo-text"}
    assert custom_job.state.name == "JOB_STATE_SUCCEEDED"


def test_failed_job_raises(monkeypatch, no_network):
    install(monkeypatch, FakeJobService(fail=("retention-train_policy",)))
    with pytest.raises(RuntimeError, match="gate failed"):
        _job("train_policy").run(**vertex.run_kwargs(CFG, jobs.MACHINES["train_policy"]))
