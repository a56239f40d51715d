"""Model artifact layout: `<root>/models/<name>/<version>/`, the evaluation files, and promotion to `champion`.

The root is a local folder (a `file://` prefix is accepted). In production the training job writes to the
GCS artifact root through its `/gcs/<bucket>` mount, so the same path code serves both.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from retention.calibration import importance_plot, reliability_plot

CHAMPION = "champion"
PREDICTIONS = "test_predictions.parquet"
METRICS = "metrics.json"

log = logging.getLogger(__name__)


def _root(root: str | Path) -> Path:
    return Path(str(root).removeprefix("file://"))


def new_version() -> str:
    """A sortable, unique version: UTC timestamp to the second, then a short random hex tag."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def version_dir(root: str | Path, name: str, version: str) -> Path:
    """`<root>/models/<name>/<version>`."""
    return _root(root) / "models" / name / version


def champion_dir(root: str | Path, name: str) -> Path:
    """`<root>/models/<name>/champion`, the directory the daily DAG reads."""
    return _root(root) / "models" / name / CHAMPION


def promote(root: str | Path, name: str, version: str) -> Path:
    """Make `version` the champion of `name`: copy it beside the champion, then swap the directories by rename.

    Readers see the old champion or the new one, never a half-copied folder; between the two renames
    (microseconds) the champion path is briefly absent, which a reader retrying its load tolerates.
    """
    source, champion = version_dir(root, name, version), champion_dir(root, name)
    if not (source / METRICS).is_file():
        raise FileNotFoundError(f"no finished run to promote at {source}")
    staging = champion.with_name(f".{CHAMPION}-{version}-{secrets.token_hex(3)}")
    shutil.copytree(source, staging)
    retired = champion.with_name(f".{CHAMPION}-retired-{secrets.token_hex(3)}")
    if champion.exists():
        os.rename(champion, retired)
    os.rename(staging, champion)
    if retired.exists():
        shutil.rmtree(retired)
    return champion


def promote_if_passed(root: str | Path, name: str, version: str, verdict: dict, no_promote: bool) -> int:
    """Promote on a passed gate, else say why; the exit status of a training job (always 0 under no_promote)."""
    summary = f"AUC {verdict['auc']:.4f} (>= {verdict['min_auc']}), ECE {verdict['ece']:.4f} (<= {verdict['max_ece']})"
    if no_promote:
        outcome = "passed" if verdict["passed"] else "FAILED"
        log.info("gate %s: %s; --no-promote: champion left as it is", outcome, summary)
        return 0
    if not verdict["passed"]:
        log.error("gate FAILED for %s %s: %s; not promoted", name, version, summary)
        return 1
    log.info("gate passed: %s; promoted to %s", summary, promote(root, name, version))
    return 0


def read_metrics(directory: str | Path) -> dict:
    """The metrics.json of a version or champion directory."""
    return json.loads((Path(directory) / METRICS).read_text())


def write_evaluation(directory: str | Path, metrics: dict, ids, y, p_raw, p_cal, importance: dict[str, float]) -> None:
    """metrics.json, test_predictions.parquet (id, label, p_raw, p_cal), reliability.png and importance.png."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    preds = pd.DataFrame({"id": np.asarray(ids), "label": np.asarray(y, dtype="int64"),
                          "p_raw": np.asarray(p_raw, dtype=float), "p_cal": np.asarray(p_cal, dtype=float)})
    preds.to_parquet(directory / PREDICTIONS, index=False)
    reliability_plot(y, p_raw, p_cal, directory / "reliability.png")
    importance_plot(list(importance), list(importance.values()), directory / "importance.png")
    # metrics.json last: its presence marks a finished run (promote checks it)
    (directory / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=False))
