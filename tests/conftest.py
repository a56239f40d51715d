"""Shared fixtures: a test-only embedded BigQuery and artifact root, so tests never touch the demo's."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from retention.config import REPO_ROOT, load_config



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def test_env(tmp_path_factory) -> dict[str, str]:
    """Environment of the test session: its own artifact root and emulator ports."""
    root = tmp_path_factory.mktemp("artifacts")
    ports = {"RETENTION_BQ_ENDPOINT": f"http://127.0.0.1:{_free_port()}", "RETENTION_BQ_GRPC_PORT": str(_free_port())}
    env = {**ports, "RETENTION_ARTIFACT_ROOT": str(root), "RETENTION_DATA_DIR": str(REPO_ROOT.parent / "shared" / "data")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def cfg(test_env):
    return load_config()


@pytest.fixture(scope="session")
def bq_client(cfg):
    """A real google-cloud-bigquery client against an emulator started for this session."""
    from retention.infra import bq, emulator

    emu = emulator.for_config(cfg)
    emulator.up(emu, cfg.project)
    client = bq.client(cfg)
    bq.ensure_tables(client, cfg)
    yield client
    emulator.down(emu)


@pytest.fixture(scope="session")
def champions(cfg):
    """Real risk, accept and policy champions trained once per session: the tabular models with the quick profile,
    the policy with the smoke profile (the whole training and four-world evaluation on a 1,500-customer sample)."""
    from retention.infra import jobs

    for name in ("risk", "accept", "policy"):
        if not (cfg.model_dir(name) / "metrics.json").exists():
            profile = "smoke" if name == "policy" else "quick"
            jobs.run_local(f"train_{name}", jobs.common_args(cfg) + ["--profile", profile])
    return {name: cfg.model_dir(name) for name in ("risk", "accept", "policy")}


def data_dir() -> Path:
    return REPO_ROOT.parent / "shared" / "data"
