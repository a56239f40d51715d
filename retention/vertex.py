"""Production settings, and the Vertex AI custom job that runs a `training/` entry point from its docker/ image.

The job runs the same module with the same arguments as the local subprocess (retention/jobs.py); only
the paths differ: a Vertex AI job sees every bucket its service account can read under `/gcs/<bucket>`
(Cloud Storage FUSE), so the GCS artifact root and data folder reach the job as plain paths and
`retention/artifacts.py` writes and promotes there as it does on a local disk.

Building a job needs no network: `google.cloud.aiplatform.CustomJob` validates the spec into its
protos on construction; only `run()` talks to Vertex AI.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from retention import jobs
from retention.config import ENV as CONFIG_ENV
from retention.config import Config

RUNNERS = ("local", "vertex")
PROFILES = ("quick", "full")
FUSE_ROOT = "/gcs"
"""Where Vertex AI training mounts Cloud Storage buckets inside the container."""
LABELS = {"app": "retention-planner"}
LOCAL_PATHS = ("artifact_root", "data_dir", "risk_model_uri", "accept_model_uri", "policy_model_uri",
               "message_model_uri", "bq_grpc_port")
"""Config fields that name places on the Composer worker, meaningless inside a job's container."""


@dataclass(frozen=True)
class VertexSettings:
    """Where training jobs run and, in production, with which images, identity and buckets."""

    runner: str = "local"
    """`local`: a child process of the Airflow worker (embedded default); `vertex`: a Vertex AI custom job."""
    region: str = "us-central1"
    """Vertex AI region of the jobs (L4 GPUs are offered there); BigQuery's location is Config.location."""
    cpu_image: str = ""
    """Artifact Registry URI of docker/Dockerfile.train-cpu (tabular and policy jobs)."""
    gpu_image: str = ""
    """Artifact Registry URI of docker/Dockerfile.gpu (SFT, reward model, PPO-text, vLLM generation)."""
    service_account: str = ""
    """Email of the service account the jobs run as."""
    staging_bucket: str = ""
    """gs:// bucket (or prefix) where Vertex AI keeps each job's own output directory."""
    artifact_uri: str = ""
    """gs:// artifact root the jobs write models to: the folder the Composer workers see as RETENTION_ARTIFACT_ROOT."""
    data_uri: str = ""
    """gs:// folder holding the public data sets (IBM Telco, UCI Bank Marketing, preference data)."""
    tabular_schedule: str = "0 2 * * 0"
    """Cron of retention_retrain_tabular (Sundays 02:00 UTC); the policy DAG follows its champions."""
    rlhf_schedule: str = "0 3 1 * *"
    """Cron of retention_retrain_rlhf (the 1st of each month, 03:00 UTC)."""
    train_profile: str = "quick"
    """Default `--profile` of scheduled retraining (`full` in production)."""

    def image(self, machine: jobs.Machine) -> str:
        """The image for a machine: the GPU image where the machine has a GPU."""
        return self.gpu_image if machine.gpu else self.cpu_image


ENV = {
    "RETENTION_RUNNER": "runner",
    "RETENTION_VERTEX_REGION": "region",
    "RETENTION_TRAIN_IMAGE_CPU": "cpu_image",
    "RETENTION_TRAIN_IMAGE_GPU": "gpu_image",
    "RETENTION_VERTEX_SERVICE_ACCOUNT": "service_account",
    "RETENTION_VERTEX_STAGING_BUCKET": "staging_bucket",
    "RETENTION_VERTEX_ARTIFACT_URI": "artifact_uri",
    "RETENTION_VERTEX_DATA_URI": "data_uri",
    "RETENTION_RETRAIN_TABULAR_SCHEDULE": "tabular_schedule",
    "RETENTION_RETRAIN_RLHF_SCHEDULE": "rlhf_schedule",
    "RETENTION_TRAIN_PROFILE": "train_profile",
}
"""Environment variable -> VertexSettings field."""

REQUIRED_FOR_VERTEX = ("cpu_image", "gpu_image", "service_account", "staging_bucket", "artifact_uri", "data_uri")
GCS_FIELDS = ("staging_bucket", "artifact_uri", "data_uri")


def settings_from_env(env: Mapping[str, str] | None = None) -> VertexSettings:
    """Build the settings from environment variables (the one place they are read), checked."""
    env = os.environ if env is None else env
    settings = VertexSettings(**{field: env[name] for name, field in ENV.items() if name in env})
    _check(settings)
    return settings


def _check(s: VertexSettings) -> None:
    names = {field: name for name, field in ENV.items()}
    if s.runner not in RUNNERS:
        raise ValueError(f"RETENTION_RUNNER={s.runner!r}: expected one of {RUNNERS}")
    if s.train_profile not in PROFILES:
        raise ValueError(f"RETENTION_TRAIN_PROFILE={s.train_profile!r}: expected one of {PROFILES}")
    if s.runner != "vertex":
        return
    missing = [names[f] for f in REQUIRED_FOR_VERTEX if not getattr(s, f)]
    if missing:
        raise ValueError(f"RETENTION_RUNNER=vertex needs {', '.join(missing)}")
    for field in GCS_FIELDS:
        if not getattr(s, field).startswith("gs://"):
            raise ValueError(f"{names[field]}={getattr(s, field)!r}: expected a gs:// URI")


def fuse_path(uri: str) -> str:
    """The path of a gs:// URI inside a Vertex AI job (`gs://b/p` -> `/gcs/b/p`)."""
    if not uri.startswith("gs://"):
        raise ValueError(f"{uri!r}: expected a gs:// URI")
    return f"{FUSE_ROOT}/{uri.removeprefix('gs://').rstrip('/')}"


def job_arguments(settings: VertexSettings, extra: list[str]) -> list[str]:
    """The job's arguments on Vertex AI: the local ones with the GCS artifact root and data folder."""
    return jobs.arguments(fuse_path(settings.artifact_uri), fuse_path(settings.data_uri), extra)


def config_env(cfg: Config, settings: VertexSettings) -> dict[str, str]:
    """The task's Config as the environment variables the job's `load_config()` reads: what differs from the
    defaults (DAG params such as a base model reach the job this way), with the job's own artifact and data paths."""
    default = Config()
    values = {name: _env_text(getattr(cfg, field)) for name, field in CONFIG_ENV.items()
              if field not in LOCAL_PATHS and getattr(cfg, field) != getattr(default, field)}
    values["RETENTION_ARTIFACT_ROOT"] = fuse_path(settings.artifact_uri)
    values["RETENTION_DATA_DIR"] = fuse_path(settings.data_uri)
    return values


def _env_text(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def worker_pool_specs(image: str, module: str, args: list[str], machine: jobs.Machine,
                      env: Mapping[str, str]) -> list[dict[str, Any]]:
    """One replica of `python -m <module> <args>` in `image` on `machine` (the WorkerPoolSpec fields)."""
    machine_spec: dict[str, Any] = {"machine_type": machine.machine_type}
    if machine.gpu:
        machine_spec |= {"accelerator_type": machine.accelerator_type, "accelerator_count": machine.accelerator_count}
    return [{
        "machine_spec": machine_spec,
        "replica_count": 1,
        "container_spec": {
            "image_uri": image,
            "command": ["python", "-m", module],
            "args": list(args),
            "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        },
    }]


def custom_job(settings: VertexSettings, cfg: Config, display_name: str, module: str, args: list[str],
               machine: jobs.Machine, credentials=None):
    """A `google.cloud.aiplatform.CustomJob` for one module on one machine, built without a network call.

    `credentials` None means application default credentials (the Composer environment's service account).
    """
    # imported here, not at module level: 2 s of imports that DAG parsing does not need
    from google.cloud import aiplatform

    return aiplatform.CustomJob(
        display_name=display_name,
        worker_pool_specs=worker_pool_specs(settings.image(machine), module, args, machine, config_env(cfg, settings)),
        project=cfg.project,
        location=settings.region,
        credentials=credentials,
        staging_bucket=settings.staging_bucket,
        labels={**LABELS, "job": display_name.removeprefix("retention-").replace("_", "-")},
    )


def training_job(settings: VertexSettings, cfg: Config, job: str, extra: list[str], credentials=None):
    """The custom job of training entry point `job` on its machine from jobs.MACHINES."""
    return custom_job(settings, cfg, f"retention-{job}", jobs.module(job), job_arguments(settings, extra),
                      jobs.MACHINES[job], credentials)


def run_kwargs(settings: VertexSettings, machine: jobs.Machine) -> dict[str, Any]:
    """Arguments of `CustomJob.run`: the service account, the machine's time limit, wait for the end."""
    return {"service_account": settings.service_account, "timeout": machine.max_hours * 3600,
            "restart_job_on_worker_restart": False, "sync": True}
