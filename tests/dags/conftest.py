"""Airflow for the DAG tests: its own AIRFLOW_HOME with a migrated SQLite metadata DB."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from retention.config import REPO_ROOT

AIRFLOW_ENV = {
    "AIRFLOW_HOME": tempfile.mkdtemp(prefix="retention-airflow-"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
}
os.environ.update(AIRFLOW_ENV)  # before anything imports airflow
sys.path.insert(0, str(REPO_ROOT / "plugins"))


@pytest.fixture(scope="session")
def airflow_db():
    """Migrate the metadata DB once (about 3 s with SQLite)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return AIRFLOW_ENV["AIRFLOW_HOME"]
