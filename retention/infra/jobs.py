"""The `training/` entry points, the machine each one runs on in production, and the local subprocess runner.

The Airflow runner in plugins/ runs a job here as a child process on the embedded default, or hands
the same module and arguments to Vertex AI (retention/infra/vertex.py) on the job's machine in production.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass

from retention.config import REPO_ROOT, Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Machine:
    """A Vertex AI machine for one job: the Compute Engine type, its GPUs and how long the job may run."""

    machine_type: str
    """Compute Engine machine type."""
    accelerator_type: str = ""
    """Vertex AI accelerator enum name (e.g. NVIDIA_L4); empty for a CPU job."""
    accelerator_count: int = 0
    """GPUs attached to the machine."""
    max_hours: int = 2
    """Vertex stops the job after this long (a hung job should not bill for days)."""

    @property
    def gpu(self) -> bool:
        return self.accelerator_count > 0


CPU = Machine("n2-standard-8")
"""8 vCPU, 32 GB: XGBoost with 8 threads and the policy simulator; no GPU helps either."""
L4 = Machine("g2-standard-8", "NVIDIA_L4", 1)
"""One L4 (24 GB) on its matching G2 host: LoRA SFT/reward/PPO on a 1-3B base and vLLM batches fit it."""

MACHINES = {
    "train_risk": CPU,
    "train_accept": CPU,
    "train_policy": Machine(CPU.machine_type, max_hours=4),
    "train_uplift": CPU,
    "train_sft": Machine(L4.machine_type, L4.accelerator_type, 1, max_hours=6),
    "train_reward": Machine(L4.machine_type, L4.accelerator_type, 1, max_hours=6),
    "train_judge": Machine(L4.machine_type, L4.accelerator_type, 1, max_hours=6),
    "train_ppo_text": Machine(L4.machine_type, L4.accelerator_type, 1, max_hours=12),
}
"""Training job (module under training/) -> the machine it gets on Vertex AI."""

JOBS = tuple(MACHINES)
"""Entry points under training/ (module names)."""

GENERATION = Machine(L4.machine_type, L4.accelerator_type, 1, max_hours=2)
"""The vLLM batch generation job of the daily plan (generator=vllm) in production (vertex.stage_job)."""


def champion_uri(name: str) -> str:
    """The Airflow Asset of the champion of model `name`, updated by the task whose job moved its pointer.

    It names the champion, not a place: readers resolve it through `<root>/models/<name>/champion.json`
    (retention/infra/artifacts.py), and `champion/` beside it mirrors the same files.
    """
    return f"retention://models/{name}/champion"


def arguments(artifact_root: str, data_dir: str, extra: list[str]) -> list[str]:
    """Arguments of a training job: where artifacts go, where the data sets are, then the job's own."""
    return ["--artifact-root", artifact_root, "--data-dir", data_dir, *extra]


def common_args(cfg: Config) -> list[str]:
    """Arguments every training job takes on this machine: the configured artifact root and data folder."""
    return arguments(str(cfg.artifacts), cfg.data_dir, [])


def module(job: str) -> str:
    """The Python module of a training job (`python -m <module>` here and in the image)."""
    if job not in JOBS:
        raise ValueError(f"unknown training job {job!r}; expected one of {JOBS}")
    return f"training.{job}"


def command(job: str, job_args: list[str]) -> list[str]:
    return [sys.executable, "-m", module(job), *job_args]


def run_local(job: str, job_args: list[str]) -> None:
    """Run the job to completion in a child process; its output streams to ours; raise on failure."""
    cmd = command(job, job_args)
    log.info("running %s", " ".join(cmd))
    # spinning OpenMP threads starve each other when the cores are shared (a SmolLM2 forward: 28 s -> 1.4 s)
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"training job {job} failed with exit code {result.returncode}")
