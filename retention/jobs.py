"""Run a `training/` entry point as a local subprocess: the embedded default of every training job.

The Airflow runner in plugins/ calls the same function locally and builds a Vertex AI custom job
with the same module and arguments in production.
"""
from __future__ import annotations

import logging
import subprocess
import sys

from retention.config import REPO_ROOT, Config

log = logging.getLogger(__name__)

JOBS = ("train_risk", "train_accept")
"""Entry points under training/ (module names)."""


def common_args(cfg: Config) -> list[str]:
    """Arguments every training job takes: where artifacts go and where the data sets are."""
    return ["--artifact-root", str(cfg.artifacts), "--data-dir", cfg.data_dir]


def command(job: str, args: list[str]) -> list[str]:
    if job not in JOBS:
        raise ValueError(f"unknown training job {job!r}; expected one of {JOBS}")
    return [sys.executable, "-m", f"training.{job}", *args]


def run_local(job: str, args: list[str]) -> None:
    """Run the job to completion in a child process; its output streams to ours; raise on failure."""
    cmd = command(job, args)
    log.info("running %s", " ".join(cmd))
    result = subprocess.run(cmd, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"training job {job} failed with exit code {result.returncode}")
