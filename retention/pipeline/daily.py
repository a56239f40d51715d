"""The eight stages of the daily plan as plain functions of (cfg, ds, run_id).

Each stage reads the previous stage's Parquet file under `cfg.run_dir(ds, run_id)`, does its
work with the pure core, writes its own file and returns a small summary (what XCom carries).
A retried stage overwrites its own file; only `publish` touches the contact plan, in one transaction.
What a stage writes to BigQuery (rejects, contact_plan, plan_runs) replaces the slice keyed by
(ds[, run_id]), so a retry or a rerun recreates it and never adds to it.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from retention.infra import bq, parquet
from retention import hashing
from retention.deciding.decide import decide_rows
from retention.deciding import rules
from retention.pipeline import impact as impact_report
from retention.pipeline import quality
from retention.scoring.accept import AcceptModel
from retention.config import Config
from retention.messages import generate as generator
from retention.messages import schedule
from retention.messages import shield as shield_rules
from retention.deciding.policy import load_policy
from retention.scoring.risk import RiskModel
from retention.scoring.score import explain, score as score_customers
from retention.scoring.uplift import LEVELS, META, UpliftModel, uplift_columns

log = logging.getLogger(__name__)

STAGES = ("extract", "validate_input", "score", "decide", "generate", "shield", "validate_plan", "publish")
TIMINGS = "timings"
STAGED = ("contact_plan", "plan_runs", "rejects", "extract", "extract_contact_history", "extract_suppression")
"""Staging tables a day's stages create (`<name>_<yyyymmdd>_<hex>`): extract's query results and publish's loads."""
RELATED_ORDER = {"contact_history": ["customer_id", "contact_date"], "suppression": ["customer_id", "since"]}
"""The ORDER BY of sql/daily_<table>.sql, which a Storage Read does not keep."""
STAGING_ABANDONED_S = 3600
"""A staging table of the day older than this was left by a killed attempt: a live one exists for seconds."""


def _path(cfg: Config, ds: str, run_id: str, stage: str) -> Path:
    """A stage's file (one row group per chunk of the day)."""
    return cfg.run_dir(ds, run_id) / f"{stage}.parquet"


@contextmanager
def _timed(cfg: Config, ds: str, run_id: str, stage: str) -> Iterator[None]:
    """Record the stage's start and wall time in its own file of the run folder (for plan_runs).

    One file per stage (or score shard): mapped shards run at once on different workers, and a shared file
    updated by each would lose some of their times.
    """
    path = cfg.run_dir(ds, run_id) / TIMINGS / f"{stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    yield
    seconds = round(time.time() - start, 3)
    tmp = path.with_suffix(".tmp")  # a task killed mid-write must not leave JSON that run_record cannot read
    tmp.write_text(json.dumps({"start": start, "seconds": seconds}))
    tmp.replace(path)
    log.info("%s for %s done in %.2f s", stage, ds, seconds)


def stage_times(cfg: Config, ds: str, run_id: str) -> tuple[float, dict[str, float]]:
    """(the run's first start, seconds per stage) from the timing files, in the order the stages ran."""
    records = {p.stem: json.loads(p.read_text()) for p in (cfg.run_dir(ds, run_id) / TIMINGS).glob("*.json")}
    ordered = sorted(records.items(), key=lambda kv: kv[1]["start"])
    return min(r["start"] for r in records.values()), {name: r["seconds"] for name, r in ordered}


def shard_name(stage: str, shard: int, shards: int) -> str:
    """The file stem of one shard's output: the stage's own name when there is one shard."""
    return stage if shards == 1 else f"{stage}-{shard:05d}-of-{shards:05d}"


def shard_rows(customer_ids: pd.Series, shard: int, shards: int) -> np.ndarray:
    """Rows of shard `shard` of `shards`: by stable hash of customer_id, so a customer's shard never moves."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} out of range for {shards} shard(s)")
    return hashing.stable_hash(customer_ids) % np.uint64(shards) == np.uint64(shard)


def _date(ds: str) -> dt.date:
    return dt.date.fromisoformat(ds)


def extract(cfg: Config, ds: str, run_id: str) -> dict[str, Any]:
    """The ds snapshot joined with contact history and suppression (sql/daily_customers.sql).

    Also the raw contact_history and suppression rows behind the join (sql/daily_<table>.sql), which
    validate_input checks row by row: the join itself would hide a broken row inside a count.

    Each file holds one row group per chunk of about cfg.chunk_rows customers: a stable hash of customer_id picks
    the chunk, so a customer's rows in all three files share one (a duplicate id meets its twin), and each chunk
    is sorted as its query orders it. Every later stage streams these chunks.
    """
    with _timed(cfg, ds, run_id, "extract"):
        client = bq.client(cfg)
        snapshot = bq.query(client, cfg, f"SELECT COUNT(*) AS n FROM `{cfg.table('customers')}` "
                                         "WHERE snapshot_date = @ds", ds=_date(ds))["n"][0]
        missing = f"no customers in {cfg.table('customers')} for snapshot_date={ds}: seed or load the day first"
        if not snapshot:
            raise ValueError(missing)
        chunks = max(1, math.ceil(int(snapshot) / cfg.chunk_rows))
        # Storage Read streams come back in no set order: sorted by id in each chunk, as the query orders them
        related = {t: sum(bq.read_query_chunks(client, cfg, bq.sql_text(f"daily_{t}", cfg),
                                               f"extract_{t}_{ds.replace('-', '')}", _path(cfg, ds, run_id, f"extract_{t}"),
                                               chunks, RELATED_ORDER[t], ds=_date(ds)))
                   for t in quality.RELATED}
        customers = sum(bq.read_query_chunks(  # last: its file marks the stage done
            client, cfg, bq.sql_text("daily_customers", cfg), f"extract_{ds.replace('-', '')}",
            _path(cfg, ds, run_id, "extract"), chunks, "customer_id", ds=_date(ds), window=cfg.fatigue_window_days,
            lookback=cfg.ledger_lookback_days))
        if not customers:  # the snapshot's rows, none of them through the day's query
            raise ValueError(missing)
    return {"customers": customers, "chunks": chunks, **related}


def validate_input(cfg: Config, ds: str, run_id: str) -> dict[str, Any]:
    """Schema errors fail here, before anything is written; bad rows go to `rejects` and the rest go on.

    Bad rows of the three input tables are this run's slice of `rejects` (replaced on a retry); the customers
    they name are left out of the day's plan. The suites run chunk by chunk (extract's chunks: a customer's rows
    of all three tables share one); the reject-share rule and the Data Docs cover the whole day.
    """
    with _timed(cfg, ds, run_id, "validate_input"):
        report_dir = cfg.artifacts / "reports" / ds
        files = [_path(cfg, ds, run_id, "extract")] + [_path(cfg, ds, run_id, f"extract_{t}") for t in quality.RELATED]
        chunks = len(parquet.group_sizes(files[0]))
        summaries, rejects, ids = [], [], []
        client = bq.client(cfg)
        try:
            with parquet.chunk_writer(_path(cfg, ds, run_id, "validate_input")) as out:
                for i, (day, *related) in enumerate(zip(*map(parquet.row_groups, files))):
                    good, bad, summary, part_ids = quality.check_input(
                        day, ds, run_id, report_dir, dict(zip(quality.RELATED, related)),
                        part=f"{i + 1} of {chunks}" if chunks > 1 else "", docs=ids if i == chunks - 1 else None)
                    out.write(good)
                    summaries.append(summary)
                    rejects.append(bad)
                    ids += part_ids
                summary = quality.merge_input_summaries(summaries)
                rejects = pd.concat(rejects, ignore_index=True)
                quality.check_reject_share(summary, rejects, cfg.max_reject_share)  # before the file is kept
        except quality.RejectShareError as err:
            bq.replace_partition(client, cfg, err.rejects, "rejects", "plan_date", _date(ds), {"run_id": run_id})
            raise
        bq.replace_partition(client, cfg, rejects, "rejects", "plan_date", _date(ds), {"run_id": run_id})
    return {"valid": summary["good_rows"], "rejected": summary["rejected_rows"], "reject_records": len(rejects),
            "report_uri": summary["report_uri"]}


def score(cfg: Config, ds: str, run_id: str, shard: int = 0) -> dict[str, Any]:
    """Calibrated churn risk and acceptance for each offer level, from the champions (reason codes come after
    decide, for the rows that use them), chunk by chunk.

    With cfg.score_shards > 1 this scores one shard of the customers (a mapped task per shard); decide reads
    them all.
    """
    shards = cfg.score_shards
    name = shard_name("score", shard, shards)
    with _timed(cfg, ds, run_id, name):
        risk = RiskModel.load(cfg.model_dir("risk"))
        accept = AcceptModel.load(cfg.model_dir("accept"))
        rows, risk_sum = 0, 0.0
        with parquet.chunk_writer(_path(cfg, ds, run_id, name)) as out:
            for day in parquet.row_groups(_path(cfg, ds, run_id, "validate_input")):
                if shards > 1:
                    day = day[shard_rows(day["customer_id"], shard, shards)].reset_index(drop=True)
                scored = with_uplift(cfg, score_customers(day, risk, accept, _date(ds), reasons=False))
                scored["risk_model"] = rules.text_column(risk.version_, len(scored))
                scored["accept_model"] = rules.text_column(accept.version_, len(scored))
                out.write(scored)
                rows, risk_sum = rows + len(scored), risk_sum + float(scored["churn_risk"].sum())
    return {"shard": shard, "scored": rows, "mean_risk": round(risk_sum / rows, 4) if rows else float("nan")}


def with_uplift(cfg: Config, scored: pd.DataFrame) -> pd.DataFrame:
    """`scored` plus uplift_model and uplift_0..3: the uplift champion's effect per offer level with cfg.use_uplift,
    null otherwise (nullable contract columns). With the knob on and no champion, a FileNotFoundError says how to
    train one: a plan that was asked to decide by the uplift must not quietly fall back to the plan's model."""
    if not cfg.use_uplift:
        return scored.assign(uplift_model=None, **{f"uplift_{k}": np.nan for k in range(LEVELS)})
    path = cfg.model_dir("uplift")
    if not (path / META).is_file():
        raise FileNotFoundError(f"use_uplift is on but {path} holds no uplift model: train one with "
                                "`python -m training.train_uplift`, or set RETENTION_USE_UPLIFT=0")
    model = UpliftModel.load(path)
    return scored.assign(uplift_model=model.version_).join(uplift_columns(scored, model))


def score_files(cfg: Config, ds: str, run_id: str) -> list[Path]:
    """The score stage's files: one per shard."""
    shards = cfg.score_shards
    return [_path(cfg, ds, run_id, shard_name("score", s, shards)) for s in range(shards)]


REASON_SAMPLE_KEY = "reason-sample|v1"
"""Hash key of the not-contacted rows that get reason codes too (16 bytes; independent of the holdout's hash)."""
NOT_DECIDED_ON = frozenset(bq.columns("customers")) - {"customer_id", "customer_value", "channel"} | {
    "risk_model", "accept_model", "uplift_model", "reason_codes", "last_outcome", "total_contacts"}
"""Scored columns the decision never reads: decide holds the others for the whole day, and joins these back
chunk by chunk."""


def decide(cfg: Config, ds: str, run_id: str) -> dict[str, Any]:
    """Contact or wait, which offer, when to follow up: under the hard rules, within the budget. Then reason codes
    for the contacted rows (their messages use them) and a cfg.reason_sample_share sample of the rest.

    One ordered pass over all the day's candidates, whatever the score shards or chunks: the policy sees the
    budget left, so each decision depends on every one before it in the queue. The rows stay in the score files'
    order (no whole-day gather at 10M rows); their customer_id order is the canonical order in which the deciders
    break ties, so the plan is the same however the day was sharded. Only the columns the decision reads are held
    for the whole day; the plan's columns are then made chunk by chunk from the choices (`rules.Decided`).
    """
    with _timed(cfg, ds, run_id, "decide"):
        files = score_files(cfg, ds, run_id)
        unused = NOT_DECIDED_ON if cfg.use_uplift else NOT_DECIDED_ON | {f"uplift_{k}" for k in range(LEVELS)}
        scored = parquet.read_columns(files, [c for c in pq.read_schema(files[0]).names if c not in unused])
        ids = scored["customer_id"]
        policy = load_policy(cfg.model_dir("policy"))  # None without a champion: the greedy EV rule
        decided = decide_rows(scored, cfg, policy, ds, rank=rules.IdOrder(ids))
        del scored
        risk = RiskModel.load(cfg.model_dir("risk"))
        start, contacted, spend, policy_name = 0, 0, 0.0, ""
        with parquet.chunk_writer(_path(cfg, ds, run_id, "decide")) as out:
            columns = [c for c in pq.read_schema(files[0]).names if c != "reason_codes"]  # explain writes them
            for chunk in (c for f in files for c in parquet.row_groups(f, columns)):
                rows = slice(start, start + len(chunk))
                if not ids.iloc[rows].reset_index(drop=True).equals(chunk["customer_id"]):
                    raise RuntimeError("decide: the decisions lost their place among the scored chunks")
                chunk = decided[rows].frame(chunk, cfg)
                explained = chunk["contact"].to_numpy(dtype=bool) | (hashing.unit_interval(
                    hashing.keyed_hash(chunk["customer_id"], REASON_SAMPLE_KEY)) < cfg.reason_sample_share)
                out.write(chunk, {"reason_codes": explain(chunk, risk, explained)})
                start += len(chunk)
                contacted += int(chunk["contact"].sum())
                spend += float(chunk["offer_cost"].sum())
                policy_name = policy_name or (str(chunk["policy_model"].iloc[0]) if len(chunk) else "")
            if start != len(ids):
                raise RuntimeError(f"decide: {len(ids)} rows decided, {start} read back from the scored chunks")
    return {"contacted": contacted, "spend": round(spend, 2), "policy": policy_name}


def plan_batch(cfg: Config, ds: str, run_id: str, stage: str) -> shield_rules.Batch:
    """The day's names and customer ids from a stage's file, as the shield checks every message against them."""
    return shield_rules.batch_index(parquet.read_columns([_path(cfg, ds, run_id, stage)], ["customer_id", "name"]))


def generate(cfg: Config, ds: str, run_id: str) -> dict[str, Any]:
    """A message for every contacted customer (backend from cfg.generator), chunk by chunk."""
    with _timed(cfg, ds, run_id, "generate"):
        source = _path(cfg, ds, run_id, "decide")
        batch = llm_ids = None
        if cfg.generator != "template":  # the LLM checks its candidates against the whole day, and is capped over it
            batch = plan_batch(cfg, ds, run_id, "decide")
            if cfg.llm_max_messages > 0:
                rows = parquet.read_columns([source], ["customer_id", "contact", "expected_value"])
                rows = rows[rows["contact"].to_numpy(dtype=bool)]
                llm_ids = set(rows["customer_id"].iloc[generator.llm_choice(rows, cfg.llm_max_messages)])
        messages = 0
        with parquet.chunk_writer(_path(cfg, ds, run_id, "generate")) as out:
            for chunk in parquet.row_groups(source):
                chunk = generator.generate(chunk, cfg, ds, cfg.llm_max_messages, batch, llm_ids)
                out.write(chunk)
                messages += int(chunk["message"].notna().sum())
    return {"messages": messages}


def shield(cfg: Config, ds: str, run_id: str) -> dict[str, Any]:
    """Safety checks and repairs on each message, then the send time outside local quiet hours, chunk by chunk
    (every message checked against the whole day's names and ids)."""
    with _timed(cfg, ds, run_id, "shield"):
        batch = plan_batch(cfg, ds, run_id, "generate")
        repaired = 0
        with parquet.chunk_writer(_path(cfg, ds, run_id, "shield")) as out:
            for chunk in parquet.row_groups(_path(cfg, ds, run_id, "generate")):
                shielded = shield_rules.shield(chunk, cfg, ds, batch)
                shielded["send_at"] = schedule.send_at(shielded, ds, cfg.quiet_start_hour, cfg.quiet_end_hour,
                                                        cfg.send_window_start_hour)
                out.write(shielded)
                outcomes = shielded.loc[shielded["contact"], "shield_checks"].value_counts()  # few distinct texts
                repaired += int(sum(n for text, n in outcomes.items() if json.loads(text)["action"] != "none"))
    return {"repaired": repaired}


def validate_plan(cfg: Config, ds: str, run_id: str) -> dict[str, Any]:
    """The contact_plan suite and the plan invariants, chunk by chunk, before anything is published."""
    with _timed(cfg, ds, run_id, "validate_plan"):
        path = _path(cfg, ds, run_id, "shield")
        columns = [c for c in quality.plan_columns() if c in pq.read_schema(path).names]  # a missing one is named
        chunks = len(parquet.group_sizes(path))
        parts, ids = [], []
        for i, plan in enumerate(parquet.row_groups(path, columns)):
            parts.append(quality.check_plan(plan, cfg, ds, run_id, cfg.artifacts / "reports" / ds,
                                            f"{i + 1} of {chunks}" if chunks > 1 else "",
                                            ids if i == chunks - 1 else None))
            ids += parts[-1]["ids"]
        summary = quality.finish_plan(parts, cfg)
    return {"success": bool(summary["success"]), "report_uri": summary["report_uri"]}


VERSIONS = ("risk_model", "accept_model", "policy_model", "uplift_model", "message_model", "generator")
"""Plan columns of a few distinct strings: the run record reads them dictionary-encoded."""
RECORD_COLUMNS = ("customer_id", "channel", "churn_risk", "customer_value", "contact", "contacts_in_window",
                  "days_since_contact", "suppressed", "holdout", "offer_level", "offer_pct", "offer_cost",
                  "followup_days", "expected_value", *(f"accept_prob_{k}" for k in range(LEVELS)),
                  *(f"uplift_{k}" for k in range(LEVELS)), *VERSIONS)
"""Plan columns the run record reads (its counts, rules.violations and rules.campaign_figures): the day's plan is
too wide to hold whole."""


def publish(cfg: Config, ds: str, run_id: str, report_uri: str = "") -> dict[str, Any]:
    """Replace the ds partition of contact_plan in one transaction (each chunk loaded into a staging table of its
    own first), then record the run in plan_runs. Returns the run's counts and the seconds the plan took
    to stage and to swap in."""
    with _timed(cfg, ds, run_id, "publish"):
        path = _path(cfg, ds, run_id, "shield")
        client = bq.client(cfg)
        sweep_staging(client, cfg, ds)
        chunks = (c.assign(plan_date=_date(ds), run_id=run_id) for c in parquet.row_groups(path))
        loaded = bq.replace_partition(client, cfg, chunks, "contact_plan", "plan_date", _date(ds))
    present = set(pq.read_schema(path).names)
    final = pq.read_table(path, columns=[c for c in RECORD_COLUMNS if c in present],
                          read_dictionary=[c for c in VERSIONS if c in present]).to_pandas()
    row = run_record(cfg, ds, run_id, final, report_uri)
    bq.replace_partition(client, cfg, pd.DataFrame([row]), "plan_runs", "plan_date", _date(ds), {"run_id": run_id})
    return {**{k: row[k] for k in ("customers", "contacted", "spend", "violations")},
            "plan_staged_s": loaded["staged_s"], "plan_swapped_s": loaded["swapped_s"]}


def impact(cfg: Config, ds: str) -> dict[str, Any]:
    """After publish: the impact report of the newest window whose outcomes can be complete (impact.daily_window).
    With no outcomes yet it logs so and succeeds; outcomes that cannot be compared (a missing day, a duplicate, a
    contacted holdout customer) fail it, naming the rows, and write nothing."""
    client = bq.client(cfg)
    window = impact_report.daily_window(client, cfg, _date(ds))
    if window is None:
        log.info("impact: no outcomes yet in the window ending %d days before %s; nothing to report",
                 impact_report.HORIZON_DAYS, ds)
        return {"window": None}
    table, said, paths = impact_report.run(client, cfg, *window)
    log.info("impact of %s .. %s: %s", *window, said)
    headline = table.set_index("segment").loc["all", ["lift", "lift_low", "lift_high"]]
    return {"window": [str(d) for d in window], **{k: None if pd.isna(v) else round(float(v), 5)
                                                   for k, v in headline.items()}, "pictures": [str(p) for p in paths]}


def sweep_staging(client, cfg: Config, ds: str) -> list[str]:
    """Drop the day's staging tables that killed attempts left behind; returns their names.

    Only this ds's tables (`<table>_<yyyymmdd>_<hex>`, see bq.replace_partition) older than STAGING_ABANDONED_S
    go: another day's run, or a live attempt of this day, is never touched.
    """
    pattern = re.compile(rf"({'|'.join(STAGED)})_{ds.replace('-', '')}_[0-9a-f]{{8,12}}")
    cutoff = time.time() - STAGING_ABANDONED_S
    dropped = []
    for item in client.list_tables(cfg.staging_dataset):
        if pattern.fullmatch(item.table_id) and item.created.timestamp() <= cutoff:
            client.delete_table(item.reference, not_found_ok=True)
            dropped.append(item.table_id)
    if dropped:
        log.warning("dropped %d abandoned staging table(s) of %s: %s", len(dropped), ds, dropped)
    return dropped


def run_record(cfg: Config, ds: str, run_id: str, final: pd.DataFrame, report_uri: str) -> dict[str, Any]:
    """The plan_runs row: counts, budget and spend, rule violations, stage times, model versions."""
    started_at, seconds = stage_times(cfg, ds, run_id)
    rejected = parquet.num_rows(_path(cfg, ds, run_id, "extract")) - len(final)
    contacted = final["contact"]
    versions = {c: str(final[c].iloc[0]) for c in ("risk_model", "accept_model", "policy_model") if c in final}
    versions["message_model"] = sorted(final["message_model"].dropna().astype(str).unique().tolist())
    versions["generators"] = {str(k): int(n) for k, n in final["generator"].value_counts().items() if n}
    return {
        "plan_date": _date(ds), "run_id": run_id,
        "started_at": pd.Timestamp(started_at, unit="s", tz="UTC"),
        "finished_at": pd.Timestamp.now(tz="UTC"),
        "customers": len(final), "rejected": rejected, "contacted": int(contacted.sum()),
        "holdout": int(final["holdout"].sum()), "budget": cfg.daily_budget,
        "spend": round(float(final.loc[contacted, "offer_cost"].sum()), 2),
        "expected_net_revenue": round(float(final.loc[contacted, "expected_value"].sum()), 2),
        "violations": int(sum(rules.violations(final, cfg).values())),
        **rules.campaign_figures(final, cfg),
        "stage_seconds": json.dumps(seconds), "model_versions": json.dumps(versions),
        "report_uri": report_uri,
    }


def run_all(cfg: Config, ds: str, run_id: str) -> dict[str, Any]:
    """Every stage in order in this process (the CLI and tests); the DAG runs the same functions as tasks."""
    summaries = {"extract": extract(cfg, ds, run_id), "validate_input": validate_input(cfg, ds, run_id)}
    summaries["score"] = [score(cfg, ds, run_id, s) for s in range(cfg.score_shards)]
    for stage in (decide, generate, shield, validate_plan):
        summaries[stage.__name__] = stage(cfg, ds, run_id)
    summaries["publish"] = publish(cfg, ds, run_id, summaries["validate_plan"]["report_uri"])
    return summaries
