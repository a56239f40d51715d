"""Model artifact layout: `<root>/models/<name>/<version>/`, the evaluation files, and promotion to champion.

The root is a local folder (a `file://` prefix is accepted). In production the training job writes to the
GCS artifact root through its `/gcs/<bucket>` mount, so the same path code serves both.

The champion of a model is named by one small pointer object, `<root>/models/<name>/champion.json`
(`{"name", "version", "promoted_at"}`), and every reader resolves it with `champion_dir`, which returns
`<root>/models/<name>/<version>/`. Why a pointer: on Cloud Storage a folder rename is a copy and a
delete per object, so swapping a `champion/` folder can expose a half-copied champion, while replacing
one object is atomic. A version folder never changes once its metrics.json is written and promotion
never deletes one, so a reader holding an older pointer (a FUSE cache) still finds a whole model.
`<root>/models/<name>/champion/` stays as a mirror of the champion for people and outside checks;
readers fall back to it only where no pointer exists yet (artifact roots promoted before the pointer).
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

from retention.scoring.calibration import importance_plot, reliability_plot

CHAMPION = "champion"
"""The mirror folder of the champion, beside the versions."""
POINTER = "champion.json"
"""The champion pointer, beside the versions: the one object promotion commits."""
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


def pointer_path(root: str | Path, name: str) -> Path:
    """`<root>/models/<name>/champion.json`, the champion pointer."""
    return _root(root) / "models" / name / POINTER


def champion_mirror(root: str | Path, name: str) -> Path:
    """`<root>/models/<name>/champion`, the champion's files copied for people and outside checks."""
    return _root(root) / "models" / name / CHAMPION


def champion_version(root: str | Path, name: str) -> str | None:
    """The version the pointer of `name` names; None when there is no pointer."""
    path = pointer_path(root, name)
    return json.loads(path.read_text())["version"] if path.is_file() else None


def promoted_at(root: str | Path, name: str) -> datetime | None:
    """When the champion of `name` was promoted (its pointer's promoted_at); None when there is no pointer."""
    path = pointer_path(root, name)
    return datetime.fromisoformat(json.loads(path.read_text())["promoted_at"]) if path.is_file() else None


def champion_dir(root: str | Path, name: str) -> Path:
    """The directory every reader loads the champion of `name` from: the version its pointer names, else the
    `champion/` mirror (a root promoted before the pointer existed; absent when nothing was ever promoted)."""
    version = champion_version(root, name)
    return champion_mirror(root, name) if version is None else version_dir(root, name, version)


def promote(root: str | Path, name: str, version: str) -> Path:
    """Make the finished run `version` the champion of `name`; returns its directory.

    First the pointer (the commit: one object replaced in one step, so readers see the old champion or the
    new one, never a mix), then the `champion/` mirror. A crash after the pointer leaves the new champion in
    force and the mirror without its metrics.json; promoting the same version again repairs the mirror.
    """
    source = version_dir(root, name, version)
    if not (source / METRICS).is_file():
        raise FileNotFoundError(f"no finished run to promote at {source}")
    _write_pointer(root, name, version)
    _refresh_mirror(source, champion_mirror(root, name))
    return source


def _write_pointer(root: str | Path, name: str, version: str) -> None:
    """Write the pointer under a temporary name, then rename it over the old one: one file, one step, on a
    local disk and on Cloud Storage FUSE alike (a file rename there replaces the object in one operation)."""
    path = pointer_path(root, name)
    tmp = path.with_name(f".{POINTER}.{secrets.token_hex(3)}.tmp")
    promoted_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    tmp.write_text(json.dumps({"name": name, "version": version, "promoted_at": promoted_at}) + "\n")
    os.replace(tmp, path)


def _refresh_mirror(source: Path, mirror: Path) -> None:
    """Copy `source` over `mirror` file by file: metrics.json removed first and copied last (a mirror that holds
    metrics.json is whole), files the new version lacks deleted."""
    mirror.mkdir(parents=True, exist_ok=True)
    (mirror / METRICS).unlink(missing_ok=True)
    files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    files.remove(Path(METRICS))
    for rel in files:
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, mirror / rel)
    kept = set(files)
    for path in sorted(mirror.rglob("*"), reverse=True):  # deepest first, so a folder is emptied before it is seen
        if path.is_file() and path.relative_to(mirror) not in kept:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    shutil.copyfile(source / METRICS, mirror / METRICS)


def promote_if_passed(root: str | Path, name: str, version: str, passed: bool, summary: str, no_promote: bool) -> int:
    """Promote on a passed gate, else say why; the exit status of a training job (always 0 under no_promote).

    Every training entry point ends here, so a failed gate (or --no-promote) never touches the pointer.
    """
    if no_promote:
        log.info("gate %s: %s; --no-promote: champion left as it is", "passed" if passed else "FAILED", summary)
        return 0
    if not passed:
        log.error("gate FAILED for %s %s: %s; not promoted", name, version, summary)
        return 1
    log.info("gate passed: %s; %s %s promoted: %s", summary, name, version, promote(root, name, version))
    return 0


def tabular_summary(verdict: dict) -> str:
    """The AUC/ECE gate of a tabular model (calibration.gate's verdict) in one line."""
    return (f"AUC {verdict['auc']:.4f} (>= {verdict['min_auc']}), "
            f"ECE {verdict['ece']:.4f} (<= {verdict['max_ece']})")


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
    title = f"{metrics.get('model', directory.parent.name)} {metrics.get('version', directory.name)}"
    reliability_plot(y, p_raw, p_cal, directory / "reliability.png", title=title)
    importance_plot(list(importance), list(importance.values()), directory / "importance.png", title=title)
    # metrics.json last: its presence marks a finished run (promote checks it)
    (directory / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=False))
