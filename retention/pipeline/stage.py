"""Run one stage of the daily plan as its own process: how vLLM generation runs as a Vertex AI job on an L4.

Usage:
    python -m retention.pipeline.stage generate --ds 2026-03-08 --run-id scheduled__2026-03-08T05:00:00+00:00

The Config comes from the environment (`load_config()`), as in every job (vertex.config_env sets it). The
stage reads the previous stage's Parquet file under the artifact root and writes its own there, exactly as
the Airflow task would (retention/pipeline/daily.py). Its summary goes to stdout as one JSON line and to
`<run dir>/<stage>.summary.json`, where the task that started the job reads it back for XCom.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from retention.pipeline import daily
from retention.config import Config, load_config

STAGES = tuple(s for s in daily.STAGES if s != "publish")
"""Stages that run from (cfg, ds, run_id) alone; publish also needs validate_plan's report URI from the DAG."""


def run_in_process(cfg: Config, stage: str, ds: str, run_id: str) -> dict[str, Any]:
    """`retention.pipeline.daily.<stage>(cfg, ds, run_id)`: its summary."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    return getattr(daily, stage)(cfg, ds, run_id)


def summary_path(cfg: Config, ds: str, run_id: str, stage: str) -> Path:
    """Where a stage run as a job leaves its summary: beside its Parquet file in the run folder."""
    return cfg.run_dir(ds, run_id) / f"{stage}.summary.json"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m retention.pipeline.stage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=STAGES, help="the stage of the daily plan to run")
    p.add_argument("--ds", required=True, help="the plan date, YYYY-MM-DD")
    p.add_argument("--run-id", required=True, help="the Airflow run id whose run folder the stages share")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # logs to stderr: stdout carries only the summary
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config()
    summary = run_in_process(cfg, args.stage, args.ds, args.run_id)
    text = json.dumps(summary)
    summary_path(cfg, args.ds, args.run_id, args.stage).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
