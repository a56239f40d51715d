"""BigQuery I/O through the official client: the same code for the embedded emulator and for BigQuery."""
from __future__ import annotations

import datetime
import io
import json
import logging
import re
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from retention.config import REPO_ROOT, Config

log = logging.getLogger(__name__)

SCHEMA_DIR = REPO_ROOT / "sql" / "schema"
STAGING_TTL_MS = 24 * 3600 * 1000
PARTITION_FILTER_REQUIRED = ("contact_plan",)
"""Tables whose every query must filter on the partition column (BigQuery rejects one that does not)."""
CONTRACT_TABLES = ("customers", "contact_history", "suppression", "contact_plan", "plan_runs", "rejects",
                   "online_decisions", "online_budget", "outcomes", "impact")


API_RETRY_S = 30.0
"""How long one API call is retried when the endpoint does not answer (the client's default is 600 s)."""
RETRY = bigquery.DEFAULT_RETRY.with_deadline(API_RETRY_S)
USER_QUERY_ROWS = 1000
"""Most rows `user_query` returns (a printed table, not an export)."""


class Unavailable(ConnectionError):
    """The configured BigQuery endpoint does not answer."""


def client(cfg: Config) -> bigquery.Client:
    """A client for the configured endpoint: anonymous on the emulator, default credentials on BigQuery.

    Every query and load job it starts carries the config's labels and job timeout. On the emulator, an
    endpoint that does not answer fails here, at once, instead of after the client's retries.
    """
    defaults = {"labels": labels(cfg), "job_timeout_ms": int(cfg.bq_timeout_s * 1000)}
    jobs = {"default_query_job_config": bigquery.QueryJobConfig(**defaults),
            "default_load_job_config": bigquery.LoadJobConfig(**defaults)}
    if cfg.bq_endpoint:
        check_reachable(cfg.bq_endpoint)
        return bigquery.Client(project=cfg.project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=cfg.bq_endpoint), **jobs)
    return bigquery.Client(project=cfg.project, location=cfg.location, **jobs)


def check_reachable(endpoint: str, timeout_s: float = 2.0) -> None:
    """Raise Unavailable unless something accepts a TCP connection at the endpoint."""
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or 80), timeout=timeout_s).close()
    except OSError as err:
        raise Unavailable(f"the embedded BigQuery is not running: `retention bq up` (nothing answers at {endpoint})") \
            from err


LABEL_TEXT = re.compile(r"[^a-z0-9_-]")


def labels(cfg: Config) -> dict[str, str]:
    """cfg.bq_labels (`key=value,...`) as BigQuery job labels: lowercase [a-z0-9_-], at most 63 characters."""
    pairs = (item.split("=", 1) for item in cfg.bq_labels.split(",") if "=" in item)
    return {LABEL_TEXT.sub("_", k.strip().lower())[:63]: LABEL_TEXT.sub("_", v.strip().lower())[:63]
            for k, v in pairs if k.strip()}


def _wait(job: bigquery.QueryJob | bigquery.LoadJob) -> Any:
    """A job's result: each poll retried for API_RETRY_S at most, the whole wait capped by the job's timeout."""
    timeout_ms = job.configuration.job_timeout_ms
    return job.result(retry=RETRY, timeout=int(timeout_ms) / 1000 if timeout_ms else None)


def storage_client(cfg: Config):
    """A BigQuery Storage Read client (Arrow reads); bound to the emulator's gRPC port locally."""
    from google.cloud import bigquery_storage_v1
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

    if not cfg.bq_endpoint:
        return bigquery_storage_v1.BigQueryReadClient()
    import grpc

    # read streams carry Arrow record batches far larger than gRPC's 4 MB default (the cloud client lifts it too);
    # keepalive pings make a read from an emulator that died mid-stream fail in seconds instead of waiting forever
    options = [("grpc.max_receive_message_length", -1), ("grpc.keepalive_time_ms", 10_000),
               ("grpc.keepalive_timeout_ms", 5_000), ("grpc.keepalive_permit_without_calls", 1)]
    channel = grpc.insecure_channel(f"127.0.0.1:{cfg.bq_grpc_port}", options=options)
    return bigquery_storage_v1.BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))


# --- schemas -----------------------------------------------------------------

def contract(table: str) -> dict[str, Any]:
    """The checked-in schema of a contract table: fields, partition column, clustering."""
    return json.loads((SCHEMA_DIR / f"{table}.json").read_text())


def schema(table: str) -> list[bigquery.SchemaField]:
    return [bigquery.SchemaField(f["name"], f["type"], mode=f["mode"], description=f.get("description"))
            for f in contract(table)["fields"]]


def columns(table: str) -> list[str]:
    return [f["name"] for f in contract(table)["fields"]]


def table_spec(cfg: Config, table: str, staging: bool = False, name: str | None = None) -> bigquery.Table:
    """A Table object with the contract's schema, partitioning and clustering."""
    spec = contract(table)
    t = bigquery.Table(cfg.table(name or table, staging), schema=schema(table))
    if spec["partition_by"]:
        t.time_partitioning = bigquery.TimePartitioning(field=spec["partition_by"])
    if spec["cluster_by"]:
        t.clustering_fields = spec["cluster_by"]
    # a staging copy is read whole by the swap's INSERT ... SELECT, so only the contract table requires the filter
    if table in PARTITION_FILTER_REQUIRED and not staging:
        t.require_partition_filter = True
    return t


def ensure_tables(bq: bigquery.Client, cfg: Config) -> None:
    """Create both datasets and every contract table when missing, and add the contract columns a table
    lacks (idempotent)."""
    for ds in (cfg.dataset, cfg.staging_dataset):
        dataset = bigquery.Dataset(f"{cfg.project}.{ds}")
        dataset.location = cfg.location
        if ds == cfg.staging_dataset:  # a staging table left by a killed task expires by itself
            dataset.default_table_expiration_ms = STAGING_TTL_MS
        bq.create_dataset(dataset, exists_ok=True, retry=RETRY)
    for table in CONTRACT_TABLES:
        created = bq.create_table(table_spec(cfg, table), exists_ok=True, retry=RETRY)
        if table in PARTITION_FILTER_REQUIRED and not created.require_partition_filter:  # made before the rule
            created.require_partition_filter = True
            created = bq.update_table(created, ["require_partition_filter"], retry=RETRY)
        _add_missing_columns(bq, cfg, table, created)


def _add_missing_columns(bq: bigquery.Client, cfg: Config, table: str, existing: bigquery.Table,
                         table_id: str | None = None) -> None:
    """Add the contract's columns a table lacks (NULLABLE: the rows are kept), by DDL, which BigQuery and the
    emulator both apply to the stored table. The emulator's metadata can list a column its storage lacks, so
    locally the stored columns are read from an empty query instead. table_id: the table (default: the contract's)."""
    table_id = table_id or cfg.table(table)
    if cfg.is_local_bq:
        part = contract(table).get("partition_by")
        probe = f"SELECT * FROM `{table_id}` WHERE {f'{part} IS NULL AND ' if part else ''}FALSE"
        stored = {f.name for f in bq.query(probe, timeout=cfg.bq_timeout_s).result().schema}
    else:
        stored = {f.name for f in existing.schema}
    for f in schema(table):
        if f.name not in stored:
            bq.query(f"ALTER TABLE `{table_id}` ADD COLUMN IF NOT EXISTS {f.name} {f.field_type}",
                     timeout=cfg.bq_timeout_s).result()


# --- reads -------------------------------------------------------------------

def query_params(params: dict[str, Any]) -> list[bigquery.ScalarQueryParameter]:
    """Typed scalar parameters: every value reaches SQL as a parameter, never as text."""
    kinds = {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING", datetime.date: "DATE"}
    return [bigquery.ScalarQueryParameter(name, kinds[type(value)], value) for name, value in params.items()]


def query(bq: bigquery.Client, cfg: Config, sql: str, **params: Any) -> pd.DataFrame:
    """Run one statement with query parameters and return its rows as a DataFrame (Arrow when it can)."""
    job = bq.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=query_params(params)), retry=RETRY)
    return _wait(job).to_dataframe(create_bqstorage_client=False)


def user_query(bq: bigquery.Client, cfg: Config, sql: str, **params: Any) -> tuple[pd.DataFrame, int]:
    """A statement typed by a user: billed bytes capped by cfg.maximum_bytes_billed, at most USER_QUERY_ROWS rows.

    Returns the rows and the statement's total row count.
    """
    config = bigquery.QueryJobConfig(query_parameters=query_params(params),
                                     maximum_bytes_billed=cfg.maximum_bytes_billed or None)
    rows = bq.query(sql, job_config=config, retry=RETRY).result(retry=RETRY, timeout=cfg.bq_timeout_s,
                                                                 max_results=USER_QUERY_ROWS)
    return rows.to_dataframe(create_bqstorage_client=False), rows.total_rows or 0


@contextmanager
def _query_table(bq: bigquery.Client, cfg: Config, sql: str, name: str, **params: Any) -> Iterator[str]:
    """The query's rows in a staging table for the block's reads, dropped when the block ends, however it ends.

    BigQuery and the emulator both serve table reads over the Storage Read API (gRPC), while the emulator cannot
    serve a query's anonymous result table that way: CREATE TABLE AS is the portable statement.
    """
    dest = cfg.table(f"{name}_{uuid.uuid4().hex[:12]}", staging=True)
    try:
        execute(bq, f"CREATE TABLE `{dest}` AS {sql}", **params)
        yield dest
    finally:
        bq.delete_table(dest, not_found_ok=True, retry=RETRY)


def read_query(bq: bigquery.Client, cfg: Config, sql: str, name: str, order_by: str | list[str] | None = None,
               **params: Any) -> pd.DataFrame:
    """Run a query into a staging table, read it over the Storage Read API (Arrow streams), drop the table.

    A table read keeps no ORDER BY (streams arrive in any order): `order_by` sorts the rows here.
    """
    with _query_table(bq, cfg, sql, name, **params) as dest:
        rows = bq.list_rows(dest, retry=RETRY).to_dataframe(bqstorage_client=storage_client(cfg))
    return rows.sort_values(order_by, kind="stable", ignore_index=True) if order_by else rows


def read_query_chunks(bq: bigquery.Client, cfg: Config, sql: str, name: str, path: Path, buckets: int,
                      order_by: str | list[str], **params: Any) -> list[int]:
    """`read_query` for results too large to hold: into the Parquet file `path`, one row group per bucket of rows
    (the high half of a stable hash of customer_id mod `buckets`), each sorted by `order_by`; returns each
    bucket's row count.

    The Storage Read pages are gathered SPILL_ROWS at a time and split by bucket into spill files; each bucket is
    then read back, sorted and written, so memory holds one bucket (or one gathered block) at a time. The pandas
    types are those `to_dataframe` gives.
    """
    from retention.infra.parquet import ChunkWriter, chunk_writer

    spill = path.parent / f".{path.stem}.buckets"
    spill.mkdir(parents=True, exist_ok=True)
    parts = [ChunkWriter(spill / f"{b:05d}.parquet") for b in range(buckets)]
    try:
        # the staging table lives only while it is read: it is gone before the stage's file appears
        with _query_table(bq, cfg, sql, name, **params) as dest:
            schema = None
            pages = bq.list_rows(dest, retry=RETRY).to_arrow_iterable(bqstorage_client=storage_client(cfg))
            for rows in gathered(pages, SPILL_ROWS):
                schema = rows.schema
                spill_by_bucket(rows, parts)
            if schema is None:
                schema = bq.list_rows(dest, max_results=0, retry=RETRY).to_arrow().schema
        for part in parts:
            part.close()
        sizes = []
        with chunk_writer(path) as out:
            for part in parts:
                table = pq.read_table(part.path) if part.writer is not None else schema.empty_table()
                rows = _to_dataframe(table).sort_values(order_by, kind="stable", ignore_index=True)
                out.write(rows)
                sizes.append(len(rows))
        return sizes
    finally:
        for part in parts:
            part.close()
            part.path.unlink(missing_ok=True)
        spill.rmdir()


SPILL_ROWS = 1 << 19
"""Storage Read rows gathered before they are split into read_query_chunks' bucket files: one sort and one write per
bucket for each gathered block. Split page by page, the small writes multiplied with rows times buckets (10M rows in
20 buckets: 3,200 row groups of ~3k rows, which made the extract's time per row grow with the day's size)."""


def gathered(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """The batches in order as tables of at least `rows` rows each (the last one what is left)."""
    pages, held = [], 0
    for batch in batches:
        pages.append(batch)
        held += batch.num_rows
        if held >= rows:
            yield pa.Table.from_batches(pages)
            pages, held = [], 0
    if pages:
        yield pa.Table.from_batches(pages)


def spill_by_bucket(rows: pa.Table, parts: list) -> None:
    """Append each row to the spill file of its bucket (the high half of its customer_id's stable hash mod the
    number of files), keeping the rows' order within a bucket."""
    from retention import hashing

    # the high bits: score shards take the hash mod their count, so each chunk holds every shard's rows
    hashed = hashing.stable_hash(rows.column("customer_id").to_pandas()) >> np.uint64(32)
    bucket = (hashed % np.uint64(len(parts))).astype(np.uint16 if len(parts) <= 1 << 16 else np.uint32)  # radix sort
    order = np.argsort(bucket, kind="stable")
    edges = np.concatenate([[0], np.cumsum(np.bincount(bucket, minlength=len(parts)))])
    rows = rows.take(order)
    for b in np.flatnonzero(np.diff(edges)):
        parts[b].write_arrow(rows.slice(edges[b], edges[b + 1] - edges[b]))


_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


def _to_dataframe(table: pa.Table) -> pd.DataFrame:
    """Arrow rows of a table read as `RowIterator.to_dataframe` converts them: nullable Int64 and boolean, dbdate."""
    import db_dtypes

    types = _PANDAS_TYPES | {pa.date32(): db_dtypes.DateDtype()}
    return table.to_pandas(types_mapper=types.get)


def execute(bq: bigquery.Client, sql: str, **params: Any) -> int:
    """Run one DML/DDL statement; returns the affected row count when there is one."""
    job = bq.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=query_params(params)), retry=RETRY)
    _wait(job)
    return job.num_dml_affected_rows or 0


def sql_text(name: str, cfg: Config) -> str:
    """A statement from sql/<name>.sql with `{project}`, `{dataset}` and `{staging}` filled in."""
    text = (REPO_ROOT / "sql" / f"{name}.sql").read_text()
    return text.format(project=cfg.project, dataset=cfg.dataset, staging=cfg.staging_dataset)


# --- writes ------------------------------------------------------------------

def to_arrow(df: pd.DataFrame, table: str) -> pa.Table:
    """A frame as Arrow with the contract's column order and types; a null in a REQUIRED column is an error."""
    fields = contract(table)["fields"]
    for f in fields:
        if f["mode"] == "REQUIRED" and (f["name"] not in df or df[f["name"]].isna().any()):
            rows = [] if f["name"] not in df else df.index[df[f["name"]].isna()].tolist()[:5]
            ids = df.loc[rows, "customer_id"].tolist() if "customer_id" in df and rows else []
            raise ValueError(f"{table}.{f['name']} is REQUIRED but missing or null in rows {rows} "
                             f"(customer_id {ids})")
    arrays = [_arrow_column(df[f["name"]] if f["name"] in df else pd.Series([None] * len(df)), f) for f in fields]
    return pa.table(arrays, names=[f["name"] for f in fields])


_ARROW = {"STRING": pa.string(), "INT64": pa.int64(), "FLOAT64": pa.float64(), "BOOL": pa.bool_(),
          "DATE": pa.date32(), "TIMESTAMP": pa.timestamp("us", tz="UTC")}


def _arrow_column(values: pd.Series, field: dict[str, Any]) -> pa.Array:
    kind = _ARROW[field["type"]]
    if field["mode"] == "REPEATED":
        return pa.array([list(v) if v is not None else [] for v in values], type=pa.list_(kind))
    if field["type"] == "DATE":
        values = pd.to_datetime(values).dt.date
    return pa.array(values.astype(object).where(values.notna(), None), type=kind)


def load(bq: bigquery.Client, df: pd.DataFrame, table: str, table_id: str, truncate: bool = True) -> None:
    """Load a frame into `table_id` with the contract schema of `table` (one load job: all or nothing).

    The Parquet bytes go through a resumable upload (size unknown to the client): the emulator
    rejects small multipart uploads, BigQuery takes either.
    """
    buf = io.BytesIO()
    pq.write_table(to_arrow(df, table), buf)
    buf.seek(0)
    write = bigquery.WriteDisposition.WRITE_TRUNCATE if truncate else bigquery.WriteDisposition.WRITE_APPEND
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET, schema=schema(table),
                                    write_disposition=write)
    _wait(bq.load_table_from_file(buf, table_id, job_config=config))


def replace_partition(bq: bigquery.Client, cfg: Config, df: pd.DataFrame | Iterable[pd.DataFrame], table: str,
                      key: str, value: Any, extra_key: dict[str, Any] | None = None) -> dict[str, float]:
    """Atomically make the rows of `table` where `key = value` exactly `df` (a frame, or frames in chunks); returns
    the rows and the seconds spent staging them and swapping them in (also logged).

    Each chunk is loaded into a staging table of its own (one load job each: memory holds one chunk; an append to
    a growing table cost the emulator more with every chunk, 176 s for 10M rows instead of about 100), then one
    transaction: delete the slice, insert every staged row, commit. Readers see the old slice or the new one, never
    a mix; a statement that fails rolls the whole transaction back, and a failed chunk load leaves the contract
    table untouched. `extra_key` narrows the replaced slice (e.g. run_id). The staging tables are named
    `<table>_<yyyymmdd>_<8 hex>` and, after the first chunk, `<...><4 hex>` (what `daily.sweep_staging` drops).
    """
    base = f"{table}_{str(value).replace('-', '')}_{uuid.uuid4().hex[:8]}"
    staged: list[str] = []
    try:
        start, rows = time.perf_counter(), 0
        for i, chunk in enumerate([df] if isinstance(df, pd.DataFrame) else df):
            if i == 0 or len(chunk):  # an empty chunk adds no rows; the first table is made whatever it holds
                staged.append(_staging_table(bq, cfg, table, base if i == 0 else f"{base}{i:04x}"))
                load(bq, chunk, table, staged[-1])
            rows += len(chunk)
        if not staged:  # no chunks at all: the slice becomes empty
            staged.append(_staging_table(bq, cfg, table, base))
        loaded = time.perf_counter()
        execute(bq, _swap_sql(cfg, table, staged, {key: value, **(extra_key or {})}))
        done = {"rows": rows, "staged_s": round(loaded - start, 2), "swapped_s": round(time.perf_counter() - loaded, 2)}
        log.info("%s %s=%s: %d rows staged in %d table(s) in %.1f s, swapped in in %.1f s", table, key, value, rows,
                 len(staged), done["staged_s"], done["swapped_s"])
        return done
    finally:
        for staging_id in staged:
            bq.delete_table(staging_id, not_found_ok=True, retry=RETRY)


def _staging_table(bq: bigquery.Client, cfg: Config, table: str, name: str) -> str:
    """A new empty staging table with `table`'s contract schema; returns its id."""
    bq.create_table(table_spec(cfg, table, staging=True, name=name), retry=RETRY)
    return cfg.table(name, staging=True)


def _swap_sql(cfg: Config, table: str, staged: list[str], slice_: dict[str, Any]) -> str:
    # a transaction rather than a MERGE: the emulator's MERGE ran over 14 minutes replacing a 1M-row partition,
    # the transaction 3 s; BigQuery runs either atomically
    cols = ", ".join(columns(table))
    where = " AND ".join(f"{k} = {_literal(v)}" for k, v in slice_.items())
    inserts = " ".join(f"INSERT INTO `{cfg.table(table)}` ({cols}) SELECT {cols} FROM `{staging_id}`;"
                       for staging_id in staged)
    return f"BEGIN TRANSACTION; DELETE FROM `{cfg.table(table)}` WHERE {where}; {inserts} COMMIT TRANSACTION;"


SAFE_TEXT = re.compile(r"[A-Za-z0-9_:+.\-]{1,250}")
"""What a string slice key may hold to be written into SQL: Airflow run ids and the like, never customer text."""


def _literal(value: Any) -> str:
    """A slice key as SQL text: the emulator binds no query parameters inside a multi-statement script (BigQuery
    does), so the keys are written in, and only dates and run-id-shaped strings are accepted."""
    if type(value) is datetime.date:
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str) and SAFE_TEXT.fullmatch(value):
        return f"'{value}'"
    raise ValueError(f"slice key {value!r}: only dates and strings of [A-Za-z0-9_:+.-] are written into SQL")


def count(bq: bigquery.Client, cfg: Config, table: str, where: str = "TRUE", **params: Any) -> int:
    """COUNT(*) (table.num_rows is stale after DML on the emulator)."""
    return int(query(bq, cfg, f"SELECT COUNT(*) AS n FROM `{cfg.table(table)}` WHERE {where}", **params)["n"][0])
