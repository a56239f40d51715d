"""Start, stop and inspect the embedded BigQuery emulator (bqemulator, file-backed, loopback only)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from retention.config import REPO_ROOT, Config

LAUNCHER = Path(__file__).with_name("emulator_launch.py")
PYTHON = REPO_ROOT / ".venv-bq" / "bin" / "python"
"""The emulator has its own venv: its fastapi pin conflicts with Airflow's."""
EMULATOR_MESSAGE_BYTES = 256 << 20
"""Largest gRPC message the emulator may send (a read stream's batch); its default of 11 MiB is too small."""


@dataclass(frozen=True)
class Emulator:
    """Where one emulator instance keeps its files and listens."""

    home: Path
    rest_port: int
    grpc_port: int

    @property
    def pidfile(self) -> Path:
        return self.home / "emulator.pid"

    @property
    def logfile(self) -> Path:
        return self.home / "emulator.log"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"


def for_config(cfg: Config) -> Emulator:
    if not cfg.bq_endpoint:
        raise ValueError("RETENTION_BQ_ENDPOINT is empty: this configuration uses real BigQuery, not the emulator")
    port = urlparse(cfg.bq_endpoint).port or 9050
    return Emulator(home=cfg.artifacts / "bq", rest_port=port, grpc_port=cfg.bq_grpc_port)


def is_up(emu: Emulator) -> bool:
    try:
        with urllib.request.urlopen(f"{emu.url}/bigquery/v2/projects/local/datasets", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def pid(emu: Emulator) -> int | None:
    """The pid in the pidfile when that process is alive and was started for this emulator's port."""
    if not emu.pidfile.exists():
        return None
    value, *port = (int(x) for x in emu.pidfile.read_text().split())  # "pid port"; older files hold the pid only
    if port and port[0] != emu.rest_port:  # another emulator sharing this artifact root
        return None
    try:
        os.waitpid(value, os.WNOHANG)  # reap it when this process started it
    except ChildProcessError:
        pass
    try:
        os.kill(value, 0)
    except ProcessLookupError:
        return None
    return value


def up(emu: Emulator, project: str = "local", timeout_s: float = 60) -> str:
    """Start the emulator unless it answers already; returns a one-line status."""
    if is_up(emu):
        return f"BigQuery emulator already up on {emu.url}"
    if not PYTHON.exists():
        raise FileNotFoundError(f"{PYTHON} is missing: run `make setup` to create the emulator's venv")
    emu.data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(PYTHON), str(LAUNCHER), "start", "--rest-host", "127.0.0.1", "--rest-port", str(emu.rest_port),
           "--grpc-host", "127.0.0.1", "--grpc-port", str(emu.grpc_port), "--persistent",
           "--data-dir", str(emu.data_dir), "--project", project]
    # the emulator caps every gRPC message it sends at this setting + 1 MiB, and its Storage Read streams send
    # 65,536-row Arrow batches (~12 MiB for a day of customers); BigQuery itself keeps its responses small
    env = {**os.environ, "BQEMU_WRITE_API_MAX_REQUEST_BYTES": str(EMULATOR_MESSAGE_BYTES)}
    with open(emu.logfile, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    emu.pidfile.write_text(f"{proc.pid} {emu.rest_port}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"BigQuery emulator exited with {proc.returncode}; see {emu.logfile}")
        if is_up(emu):
            return f"BigQuery emulator up on {emu.url} (gRPC {emu.grpc_port}), data in {emu.data_dir}"
        time.sleep(0.3)
    down(emu)
    raise TimeoutError(f"BigQuery emulator did not answer within {timeout_s:.0f} s; see {emu.logfile}")


def down(emu: Emulator, timeout_s: float = 20) -> str:
    """Stop the emulator started by `up` (SIGTERM, then SIGKILL); committed data stays on disk."""
    value = pid(emu)
    if value is None:
        return "BigQuery emulator is not running"
    os.killpg(value, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid(emu) is not None:
        time.sleep(0.2)
    if pid(emu) is not None:
        os.killpg(value, signal.SIGKILL)
    emu.pidfile.unlink(missing_ok=True)
    return f"BigQuery emulator stopped (pid {value})"


def status(emu: Emulator) -> str:
    """One line: up (with the pid when this checkout started it) or down (with the command that starts it)."""
    if not is_up(emu):
        return f"BigQuery emulator down on {emu.url}: `retention bq up`"
    started = f"pid {value}" if (value := pid(emu)) else "not started from this artifact root"
    return f"BigQuery emulator up on {emu.url}; {started}; data {emu.data_dir}"
