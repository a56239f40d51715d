"""One scale of the benchmark in its own process: seed N synthetic customers, run every daily stage, time each.

    python -m bench.scale 100000 --ds 2026-06-01     # prints one JSON line per stage
    python -m bench.scale 1000000 --shards 4         # also the sharded score, checked against the unsharded plan
    python -m bench.scale 1000000 --profile score    # and a pyinstrument profile of the named stages

The stages are the real `retention.pipeline.daily` functions against the configured BigQuery (the embedded
emulator by default) in the dataset `bench`, so the demo's tables are never touched.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import shutil
import sys
import time
from contextlib import contextmanager
from typing import Iterator

import pandas as pd

from bench.memory import timed
from retention.infra import bq
from retention.pipeline import daily
from retention.datasets import seed
from retention.config import load_config
from retention.messages import schedule
from retention.messages import shield as shield_rules
from retention.datasets.telco import read_telco

DECISION = ["customer_id", "churn_risk", "accept_prob_0", "accept_prob_3", "contact", "offer_level", "offer_cost",
            "followup_days", "propensity", "holdout", "decision_reason"]
"""Columns compared between the sharded and the unsharded plan (bit for bit)."""
STAGES = ("extract", "validate_input", "score", "decide", "generate", "shield", "validate_plan", "publish")


def seed_bench(cfg, n: int, day: dt.date) -> dict:
    """Load N synthetic customers, their history and suppressions for `day`; returns the load's record."""
    record: dict = {"stage": "seed_load"}
    customers = seed.synthetic_customers(n, day, 42, read_telco(cfg.data_dir))
    history = seed.history_for(customers, day, 42)
    suppression = seed.suppression_for(customers, day, 42)
    client = bq.client(cfg)
    for dataset in (cfg.dataset, cfg.staging_dataset):  # a fresh dataset: an earlier scale's rows cost every MERGE
        client.delete_dataset(f"{cfg.project}.{dataset}", delete_contents=True, not_found_ok=True)
    bq.ensure_tables(client, cfg)
    with timed(record):
        bq.replace_partition(client, cfg, customers, "customers", "snapshot_date", day)
        bq.load(client, history, "contact_history", cfg.table("contact_history"))
        bq.load(client, suppression, "suppression", cfg.table("suppression"))
    record["rows"] = n
    return record


@contextmanager
def profiled(cfg, stage: str, n: int, wanted: set[str]) -> Iterator[None]:
    """Profile the block with pyinstrument when `stage` is wanted: text to <artifacts>/bench/profile_<stage>_<n>.txt."""
    if stage not in wanted:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        path = cfg.artifacts / "bench" / f"profile_{stage}_{n}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(profiler.output_text(unicode=True, show_all=False))
        print(f"profile of {stage} at {n:,}: {path}", file=sys.stderr)


def run(n: int, ds: str, shards: int = 1, profile: frozenset[str] = frozenset()) -> list[dict]:
    """Every stage of one day at scale n: rows, seconds, rows/s, peak RSS; with shards > 1 also the sharded path."""
    cfg = load_config({"dataset": "bench"})
    records = [seed_bench(cfg, n, dt.date.fromisoformat(ds))]
    run_id = f"bench__{n}__{int(time.time())}"
    report_uri = ""
    for stage in STAGES:
        record: dict = {"stage": stage}
        with timed(record), profiled(cfg, stage, n, profile):
            if stage == "publish":
                out = daily.publish(cfg, ds, run_id, report_uri)
            else:
                out = getattr(daily, stage)(cfg, ds, run_id)
        report_uri = out.get("report_uri", report_uri)
        record["rows"] = n
        records.append(record)
    total = {"stage": "end_to_end", "rows": n,
             "seconds": sum(r["seconds"] for r in records if r["stage"] in STAGES),
             "peak_rss_mb": max(r["peak_rss_mb"] for r in records)}
    records.append(total)
    records.append(shield_schedule(cfg, ds, run_id))
    if shards > 1:
        records += sharded(cfg, ds, run_id, n, shards)
    for r in records:
        r["scale"] = n
        r["rows_per_s"] = round(r["rows"] / r["seconds"], 1) if r["seconds"] else None
        r["seconds"] = round(r["seconds"], 3)
    return records


def shield_schedule(cfg, ds: str, run_id: str) -> dict:
    """The shield and the send-time schedule alone on the day's messages (the stage adds Parquet I/O of every row)."""
    plan = pd.read_parquet(cfg.run_dir(ds, run_id) / "generate.parquet")
    record: dict = {"stage": "shield_schedule", "rows": int(plan["contact"].sum())}
    with timed(record):
        shielded = shield_rules.shield(plan, cfg, ds)
        schedule.send_at(shielded, ds, cfg.quiet_start_hour, cfg.quiet_end_hour)
    return record


def sharded(cfg, ds: str, run_id: str, n: int, shards: int) -> list[dict]:
    """Score in `shards` shards (as the DAG's mapped tasks would, here one after another), decide over all of them,
    and compare with the unsharded run's decisions: the records say whether every row is identical."""
    cfg = dataclasses.replace(cfg, score_shards=shards)
    shard_run = f"{run_id}__sharded"
    cfg.run_dir(ds, shard_run).mkdir(parents=True, exist_ok=True)
    shutil.copy(cfg.run_dir(ds, run_id) / "validate_input.parquet", cfg.run_dir(ds, shard_run))
    records = []
    for shard in range(shards):
        record: dict = {"stage": f"score_shard_{shard}_of_{shards}"}
        with timed(record):
            record["rows"] = daily.score(cfg, ds, shard_run, shard)["scored"]
        records.append(record)
    record = {"stage": f"decide_over_{shards}_shards", "rows": n}
    with timed(record):
        daily.decide(cfg, ds, shard_run)
    one = pd.read_parquet(cfg.run_dir(ds, run_id) / "decide.parquet")
    many = pd.read_parquet(cfg.run_dir(ds, shard_run) / "decide.parquet")
    record["identical_plan"] = bool(one[DECISION].equals(many[DECISION]))
    if not record["identical_plan"]:
        raise AssertionError(f"the {shards}-shard plan differs from the unsharded plan at {n:,} customers")
    return records + [record]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("n", type=int, help="synthetic customers")
    p.add_argument("--ds", default="2026-06-01", help="the benchmark day")
    p.add_argument("--shards", type=int, default=1, help="also score in this many shards and check the plan matches")
    p.add_argument("--profile", default="", help="comma-separated stages to profile with pyinstrument "
                                                 "(times include the profiler's overhead)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for record in run(args.n, args.ds, args.shards, frozenset(filter(None, args.profile.split(",")))):
        print(json.dumps(record))


if __name__ == "__main__":
    main()
