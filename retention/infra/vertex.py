"""The Vertex AI custom jobs of production: a `training/` entry point, or one stage of the daily plan, from its
docker/ image on its machine, built from the Config (its runner settings: retention/config.py).

A job runs the same module with the same arguments as the local subprocess (retention/infra/jobs.py); only
the paths differ: a Vertex AI job sees every bucket its service account can read under `/gcs/<bucket>`
(Cloud Storage FUSE), so the GCS artifact root and data folder reach the job as plain paths and
`retention/infra/artifacts.py` writes and promotes there as it does on a local disk.

Building a job needs no network: `google.cloud.aiplatform.CustomJob` validates the spec into its
protos on construction; only `run()` talks to Vertex AI.
"""
from __future__ import annotations

from typing import Any, Mapping

from retention.infra import jobs
from retention.config import ENV as CONFIG_ENV
from retention.config import Config

FUSE_ROOT = "/gcs"
"""Where Vertex AI training mounts Cloud Storage buckets inside the container."""
LABELS = {"app": "retention-planner"}
LOCAL_PATHS = ("artifact_root", "data_dir", "risk_model_uri", "accept_model_uri", "policy_model_uri",
               "message_model_uri", "bq_grpc_port")
"""Config fields that name places on the Composer worker, meaningless inside a job's container."""
RUNNER_SETTINGS = ("runner", "vertex_region", "train_image_cpu", "train_image_gpu", "vertex_service_account",
                   "vertex_staging_bucket", "vertex_artifact_uri", "vertex_data_uri", "retrain_tabular_schedule",
                   "retrain_rlhf_schedule", "train_profile")
"""Config fields that say how jobs are started, not what they do: the job's own load_config() never needs them."""
STAGE_MODULE = "retention.pipeline.stage"
"""The entry point that runs one stage of the daily plan (`python -m retention.pipeline.stage <stage> --ds D --run-id R`)."""


def image(cfg: Config, machine: jobs.Machine) -> str:
    """The image for a machine: the GPU image where the machine has a GPU."""
    return cfg.train_image_gpu if machine.gpu else cfg.train_image_cpu


def fuse_path(uri: str) -> str:
    """The path of a gs:// URI inside a Vertex AI job (`gs://b/p` -> `/gcs/b/p`)."""
    if not uri.startswith("gs://"):
        raise ValueError(f"{uri!r}: expected a gs:// URI")
    return f"{FUSE_ROOT}/{uri.removeprefix('gs://').rstrip('/')}"


def job_arguments(cfg: Config, extra: list[str]) -> list[str]:
    """A training job's arguments on Vertex AI: the local ones with the GCS artifact root and data folder."""
    return jobs.arguments(fuse_path(cfg.vertex_artifact_uri), fuse_path(cfg.vertex_data_uri), extra)


def config_env(cfg: Config) -> dict[str, str]:
    """The task's Config as the environment variables the job's `load_config()` reads: what differs from the
    defaults (DAG params such as a base model reach the job this way), with the job's own artifact and data paths."""
    default = Config()
    values = {name: _env_text(getattr(cfg, field)) for name, field in CONFIG_ENV.items()
              if field not in LOCAL_PATHS + RUNNER_SETTINGS and getattr(cfg, field) != getattr(default, field)}
    values["RETENTION_ARTIFACT_ROOT"] = fuse_path(cfg.vertex_artifact_uri)
    values["RETENTION_DATA_DIR"] = fuse_path(cfg.vertex_data_uri)
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


def custom_job(cfg: Config, display_name: str, module: str, args: list[str], machine: jobs.Machine,
               credentials=None):
    """A `google.cloud.aiplatform.CustomJob` for one module on one machine, built without a network call.

    `credentials` None means application default credentials (the Composer environment's service account).
    """
    # imported here, not at module level: 2 s of imports that DAG parsing does not need
    from google.cloud import aiplatform

    return aiplatform.CustomJob(
        display_name=display_name,
        worker_pool_specs=worker_pool_specs(image(cfg, machine), module, args, machine, config_env(cfg)),
        project=cfg.project,
        location=cfg.vertex_region,
        credentials=credentials,
        staging_bucket=cfg.vertex_staging_bucket,
        labels={**LABELS, "job": display_name.removeprefix("retention-").replace("_", "-")},
    )


def training_job(cfg: Config, job: str, extra: list[str], credentials=None):
    """The custom job of training entry point `job` on its machine from jobs.MACHINES."""
    return custom_job(cfg, f"retention-{job}", jobs.module(job), job_arguments(cfg, extra), jobs.MACHINES[job],
                      credentials)


def stage_job(cfg: Config, stage: str, ds: str, run_id: str, credentials=None):
    """The custom job of one daily-plan stage (vLLM generation) on jobs.GENERATION: an L4 from the GPU image."""
    return custom_job(cfg, f"retention-{stage}", STAGE_MODULE, [stage, "--ds", ds, "--run-id", run_id],
                      jobs.GENERATION, credentials)


def run_kwargs(cfg: Config, machine: jobs.Machine) -> dict[str, Any]:
    """Arguments of `CustomJob.run`: the service account, the machine's time limit, wait for the end."""
    return {"service_account": cfg.vertex_service_account, "timeout": machine.max_hours * 3600,
            "restart_job_on_worker_restart": False, "sync": True}
