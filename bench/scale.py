"""One scale of the benchmark in its own process: seed N synthetic customers, run every daily stage, time each.

    python -m bench.scale 100000 --ds 2026-06-01     # prints one JSON line per stage

The stages are the real `retention.daily` functions against the configured BigQuery (the embedded
emulator by default) in the dataset `bench`, so the demo's tables are never touched.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time

from bench.memory import timed
from retention import bq, daily, seed
from retention.config import load_config
from retention.telco import read_telco

STAGES = ("extract", "validate_input", "score", "decide", "generate", "shield", "validate_plan", "publish")


def seed_bench(cfg, n: int, day: dt.date) -> dict:
    """Load N synthetic customers, their history and suppressions for `day`; returns the load's record."""
    record: dict = {"stage": "seed_load"}
    customers = seed.synthetic_customers(n, day, 42, read_telco(cfg.data_dir))
    history = seed.history_for(customers, day, 42)
    suppression = seed.suppression_for(customers, day, 42)
    client = bq.client(cfg)
    bq.ensure_tables(client, cfg)
    with timed(record):
        bq.replace_partition(client, cfg, customers, "customers", "snapshot_date", day)
        bq.load(client, history, "contact_history", cfg.table("contact_history"))
        bq.load(client, suppression, "suppression", cfg.table("suppression"))
    record["rows"] = n
    return record


def run(n: int, ds: str) -> list[dict]:
    """Every stage of one day at scale n: rows, seconds, rows/s, peak RSS."""
    cfg = load_config({"dataset": "bench"})
    records = [seed_bench(cfg, n, dt.date.fromisoformat(ds))]
    run_id = f"bench__{n}__{int(time.time())}"
    report_uri = ""
    for stage in STAGES:
        record: dict = {"stage": stage}
        with timed(record):
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
    for r in records:
        r["scale"] = n
        r["rows_per_s"] = round(r["rows"] / r["seconds"], 1) if r["seconds"] else None
        r["seconds"] = round(r["seconds"], 3)
    return records


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("n", type=int, help="synthetic customers")
    p.add_argument("--ds", default="2026-06-01", help="the benchmark day")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for record in run(args.n, args.ds):
        print(json.dumps(record))


if __name__ == "__main__":
    main()
