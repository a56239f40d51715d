"""Run a training/ entry point where the configuration says: a local subprocess on the embedded default.

The Vertex AI custom-job path (same module, same arguments, from the docker/ image) is added by
the production-path work; until then a non-local runner is refused rather than faked.
"""
from __future__ import annotations

from retention import jobs
from retention.config import Config


def run_training_job(cfg: Config, job: str, extra_args: list[str]) -> None:
    """Run `training/<job>.py` with the common arguments plus `extra_args`; raise when it fails."""
    jobs.run_local(job, jobs.common_args(cfg) + extra_args)
