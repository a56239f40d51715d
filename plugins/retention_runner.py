"""Run a job where the Config's runner says: a training/ entry point, or a stage of the daily plan.

`runner=local` (the embedded default): a training job is a local subprocess, a stage a function call.
`runner=vertex` (production): a training job is a Vertex AI custom job from its docker/ image, with the
same module and arguments (retention/infra/jobs.py, retention/infra/vertex.py); so is vLLM generation, on an L4.
The job is a plain `google.cloud.aiplatform.CustomJob` run to completion inside the Airflow task: the
task fails when the job fails, and a training job fails when its model misses its gate, so an Asset
outlet of the task is updated only when a new champion was promoted.

Why a CustomJob rather than providers-google's CreateCustomContainerTrainingJobOperator: that operator
wraps the job in a TrainingPipeline built to upload a Vertex Model (ours promote themselves), and as an
operator it would make each DAG differ between the embedded default and production; a CustomJob runs
inside the same @task either way, and its spec is a proto the tests assert offline. The price: the task
holds a worker slot while the job runs (a deferrable operator would free it), acceptable for a few
retraining jobs a week and one generation job a day.
"""
from __future__ import annotations

import json
import logging

from retention.infra import jobs, vertex
from retention.config import Config

log = logging.getLogger(__name__)


def run_training_job(cfg: Config, job: str, extra_args: list[str]) -> None:
    """Run `training/<job>.py` with the common arguments plus `extra_args`; raise when it fails."""
    if cfg.runner == "local":
        jobs.run_local(job, jobs.common_args(cfg) + extra_args)
        return
    _run_on_vertex(cfg, vertex.training_job(cfg, job, extra_args), jobs.MACHINES[job])


def run_stage(cfg: Config, stage: str, ds: str, run_id: str) -> dict:
    """Run one stage of the daily plan and return its summary: generation with vLLM as a Vertex AI job on an
    L4 under the Vertex runner, everything else in this process."""
    # imported here, not at module level: the daily plan's 3 s of imports, which the retraining DAGs do not need
    from retention.pipeline.stage import run_in_process, summary_path

    if cfg.runner == "local" or stage != "generate" or cfg.generator != "vllm":
        return run_in_process(cfg, stage, ds, run_id)
    summary = summary_path(cfg, ds, run_id, stage)
    summary.unlink(missing_ok=True)  # a retried task must not read the summary of the attempt before
    _run_on_vertex(cfg, vertex.stage_job(cfg, stage, ds, run_id), jobs.GENERATION)
    return json.loads(summary.read_text())


def _run_on_vertex(cfg: Config, custom_job, machine: jobs.Machine) -> None:
    """Submit the job and wait for its end; the SDK raises when it fails or is cancelled."""
    spec = custom_job.job_spec.worker_pool_specs[0]
    command = " ".join([*spec.container_spec.command, *spec.container_spec.args])
    log.info("Vertex AI custom job: %s in %s on %s", command, spec.container_spec.image_uri,
             spec.machine_spec.machine_type)
    custom_job.run(**vertex.run_kwargs(cfg, machine))
    log.info("%s finished: %s", custom_job.resource_name, custom_job.state.name)
