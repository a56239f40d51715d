"""One scale of the benchmark in its own process: seed N synthetic customers, run every daily stage, time each.

    python -m bench.scale 100000 --ds 2026-06-01     # prints one JSON line per stage
    python -m bench.scale 1000000 --shards 4         # also the sharded score, checked against the unsharded plan
    python -m bench.scale 1000000 --profile score    # and a pyinstrument profile of the named stages
    python -m bench.scale 1000000 --repeat 2         # the day twice, each stage's fastest time kept

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

import numpy as np
import pandas as pd

from bench.memory import timed
from retention import hashing
from retention.infra import bq, emulator, parquet
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


DEMO_BUDGET_PER_CUSTOMER = 5000 / 7043
"""The demo's daily budget per customer: a business with more customers spends more on keeping them, so the bench's
plan contacts about the demo's share of its customers (about 1.8 %), not a fixed 5000's worth."""
BULK_MESSAGES = 100_000
"""Messages the bulk shield + schedule record runs in one call."""
SEED_BLOCK = 1_000_000
"""Synthetic customers made and loaded at once: the population is seeded block by block."""


def seed_bench(cfg, n: int, day: dt.date, emulator_pid: int | None = None) -> dict:
    """Load N synthetic customers, their history and suppressions for `day`, block by block (the customers in
    one transaction); returns the load's record."""
    record: dict = {"stage": "seed_load"}
    telco = read_telco(cfg.data_dir)
    client = bq.client(cfg)
    for dataset in (cfg.dataset, cfg.staging_dataset):  # a fresh dataset: an earlier scale's rows cost every MERGE
        client.delete_dataset(f"{cfg.project}.{dataset}", delete_contents=True, not_found_ok=True)
    bq.ensure_tables(client, cfg)

    def blocks() -> Iterator[pd.DataFrame]:
        for i, start in enumerate(range(0, n, SEED_BLOCK)):
            customers = seed.synthetic_customers(min(SEED_BLOCK, n - start), day, 42, telco, start)
            bq.load(client, seed.history_for(customers, day, 42 + i), "contact_history",
                    cfg.table("contact_history"), truncate=i == 0)
            bq.load(client, seed.suppression_for(customers, day, 42 + i), "suppression", cfg.table("suppression"),
                    truncate=i == 0)
            yield customers

    with timed(record, other=emulator_pid):
        bq.replace_partition(client, cfg, blocks(), "customers", "snapshot_date", day)
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


def run(n: int, ds: str, shards: int = 1, profile: frozenset[str] = frozenset(), emit: bool = False,
        repeat: int = 1) -> list[dict]:
    """Every stage of one day at scale n: rows, seconds, rows/s, peak RSS; with shards > 1 also the sharded path.
    repeat: run the day that many times (a new run id each, the same seeded day) and keep each stage's fastest
    time (`seconds_each` lists them all) and its highest peak; end_to_end is the fastest whole run.
    emit: print each record as one JSON line: the seeding's at once, the stages' when every run of the day has
    ended (a failed run prints the stages it measured before it failed, so a failure keeps the earlier ones)."""
    cfg = load_config({"dataset": "bench", "daily_budget": round(DEMO_BUDGET_PER_CUSTOMER * n, 2)})
    emu = emulator.pid(emulator.for_config(cfg)) if cfg.is_local_bq else None
    records: list[dict] = []

    def done(*measured: dict) -> None:
        for r in measured:
            r["scale"] = n
            r["rows_per_s"] = round(r["rows"] / r["seconds"], 1) if r["seconds"] else None
            r["seconds"] = round(r["seconds"], 3)
            records.append(r)
            if emit:
                print(json.dumps(r), flush=True)

    done(seed_bench(cfg, n, dt.date.fromisoformat(ds), emu))
    runs: list[list[dict]] = []
    for attempt in range(repeat):
        run_id = f"bench__{n}__{int(time.time())}" + (f"__{attempt}" if repeat > 1 else "")
        runs.append([])
        try:
            day_stages(cfg, ds, run_id, n, emu, profile if attempt == 0 else frozenset(), runs[-1])
        except BaseException:
            done(*runs[-1])  # the stages measured before the failure
            raise
    staged = [fastest(list(each)) for each in zip(*runs)]
    total = {"stage": "end_to_end", "rows": n, "seconds": min(sum(r["seconds"] for r in one) for one in runs),
             "peak_rss_mb": max(r["peak_rss_mb"] for r in staged)}
    if emu:
        total["emulator_peak_rss_mb"] = max(r["emulator_peak_rss_mb"] for r in staged)
    done(*staged, total, *shield_schedule(cfg, ds, run_id))
    if shards > 1:
        done(*sharded(cfg, ds, run_id, n, shards))
    return records


def day_stages(cfg, ds: str, run_id: str, n: int, emu: int | None, profile: frozenset[str],
               records: list[dict]) -> None:
    """One run of the day's stages: a record per stage appended to `records` as each one ends."""
    report_uri = ""
    for stage in STAGES:
        record: dict = {"stage": stage}
        with timed(record, other=emu), profiled(cfg, stage, n, profile):
            if stage == "publish":
                out = daily.publish(cfg, ds, run_id, report_uri)
                record.update(staged_s=out["plan_staged_s"], swapped_s=out["plan_swapped_s"])
            else:
                out = getattr(daily, stage)(cfg, ds, run_id)
        report_uri = out.get("report_uri", report_uri)
        record["rows"] = n
        records.append(record)


def fastest(runs: list[dict]) -> dict:
    """One stage's records over repeated runs as one: the fastest run's record, with every run's seconds and the
    highest peak memory of them all."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    if len(runs) > 1:
        best["seconds_each"] = [round(r["seconds"], 3) for r in runs]
        for key in ("peak_rss_mb", "emulator_peak_rss_mb"):
            if key in best:
                best[key] = max(r[key] for r in runs)
    return best


def shield_schedule(cfg, ds: str, run_id: str, bulk: int = BULK_MESSAGES) -> list[dict]:
    """The shield and the send-time schedule alone (the stage adds Parquet I/O of every row); the seconds count the
    two calls only. Two records: `shield_schedule` on the day's messages chunk by chunk as the stage runs them
    (a plan that contacts a few thousand pays each call's fixed cost, ~40 ms, on few messages), and
    `shield_schedule_bulk` on the same messages repeated to `bulk` in one call: the cost per message of a plan
    that messages many, which is what the 200k msg/s target is about."""
    path = cfg.run_dir(ds, run_id) / "generate.parquet"
    batch = daily.plan_batch(cfg, ds, run_id, "generate")
    record: dict = {"stage": "shield_schedule", "rows": 0, "seconds": 0.0, "peak_rss_mb": 0.0}
    plans = []
    for chunk in parquet.row_groups(path):
        plans.append(plan := chunk[chunk["contact"].to_numpy(dtype=bool)].reset_index(drop=True))
        add(record, shield_and_schedule(cfg, ds, plan, batch))
    day = pd.concat(plans, ignore_index=True)
    if day.empty:
        return [record]
    many = day.take(np.arange(bulk) % len(day)).reset_index(drop=True)
    return [record, {**add({"rows": 0, "seconds": 0.0, "peak_rss_mb": 0.0}, shield_and_schedule(cfg, ds, many, batch)),
                     "stage": "shield_schedule_bulk"}]


def shield_and_schedule(cfg, ds: str, plan: pd.DataFrame, batch) -> dict:
    part: dict = {"rows": len(plan)}
    with timed(part):
        shielded = shield_rules.shield(plan, cfg, ds, batch)
        schedule.send_at(shielded, ds, cfg.quiet_start_hour, cfg.quiet_end_hour)
    return part


def add(record: dict, part: dict) -> dict:
    """`part`'s rows and seconds added to `record`, its peak kept."""
    record["rows"] += part["rows"]
    record["seconds"] += part["seconds"]
    record["peak_rss_mb"] = max(record["peak_rss_mb"], part["peak_rss_mb"])
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
    record["identical_plan"] = bool(np.array_equal(digests(cfg.run_dir(ds, run_id) / "decide.parquet"),
                                                   digests(cfg.run_dir(ds, shard_run) / "decide.parquet")))
    if not record["identical_plan"]:
        raise AssertionError(f"the {shards}-shard plan differs from the unsharded plan at {n:,} customers")
    return records + [record]


def digests(path) -> np.ndarray:
    """One 64-bit hash of each plan row's DECISION columns (customer_id first), sorted: two plans with the same
    digests hold the same decisions for the same customers, whatever their row order. Read chunk by chunk."""
    out = []
    for chunk in parquet.row_groups(path, DECISION):
        text = chunk["customer_id"].astype("str")
        for col in DECISION[1:]:
            text = text + "|" + chunk[col].astype("str").fillna("<null>")
        out.append(hashing.stable_hash(text))
    return np.sort(np.concatenate(out))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("n", type=int, help="synthetic customers")
    p.add_argument("--ds", default="2026-06-01", help="the benchmark day")
    p.add_argument("--shards", type=int, default=1, help="also score in this many shards and check the plan matches")
    p.add_argument("--profile", default="", help="comma-separated stages to profile with pyinstrument "
                                                 "(times include the profiler's overhead)")
    p.add_argument("--repeat", type=int, default=1, help="run the day this many times and keep each stage's "
                                                         "fastest time")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    run(args.n, args.ds, args.shards, frozenset(filter(None, args.profile.split(","))), emit=True,
        repeat=args.repeat)


if __name__ == "__main__":
    main()
