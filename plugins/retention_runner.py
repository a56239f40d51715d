"""Run a training/ entry point where the settings say: a local subprocess, or a Vertex AI custom job.

Same module, same arguments either way (retention/jobs.py, retention/vertex.py). The Vertex job is a
plain `google.cloud.aiplatform.CustomJob` run to completion inside the Airflow task: the task fails
when the job fails, and a training job fails when its model misses its gate, so an Asset outlet
of the task is updated only when a new champion was promoted.

Why a CustomJob rather than providers-google's CreateCustomContainerTrainingJobOperator: that operator
wraps the job in a TrainingPipeline built to upload a Vertex Model (ours promote themselves), and as an
operator it would make each DAG differ between the embedded default and production; a CustomJob runs
inside the same @task either way, and its spec is a proto the tests assert offline. The price: the task
holds a worker slot while the job runs (a deferrable operator would free it), acceptable for a few
retraining jobs a week.
"""
from __future__ import annotations

import logging

from retention import jobs, vertex
from retention.config import Config
from retention.vertex import VertexSettings

log = logging.getLogger(__name__)


def run_training_job(cfg: Config, job: str, extra_args: list[str], settings: VertexSettings | None = None) -> None:
    """Run `training/<job>.py` with the common arguments plus `extra_args`; raise when it fails."""
    settings = vertex.settings_from_env() if settings is None else settings
    if settings.runner == "local":
        jobs.run_local(job, jobs.common_args(cfg) + extra_args)
        return
    custom_job = vertex.training_job(settings, cfg, job, extra_args)
    spec = custom_job.job_spec.worker_pool_specs[0]
    log.info("%s as a Vertex AI custom job: %s on %s, args %s", job, spec.container_spec.image_uri,
             spec.machine_spec.machine_type, " ".join(spec.container_spec.args))
    # waits for the end; the SDK raises when the job fails or is cancelled
    custom_job.run(**vertex.run_kwargs(settings, jobs.MACHINES[job]))
    log.info("%s finished: %s", custom_job.resource_name, custom_job.state.name)
