"""Data quality gates: the table contract, then Great Expectations suites on the day's input and on the plan.

Suites are data (`expectations/<table>.json`): a list of `{"expectation": name, "kwargs": {...}}`, the name in
snake case or as the GX class name. A string kwarg starting with `$` is filled in from `INJECTED` when the suite
is loaded (the IANA time zones depend on the machine's tz database, and 600 names do not belong in the JSON).
A spec may add `field`, the contract column a failure is reported against when the expectation reads a derived
column (`known_customer`), and `reason`, the text a person reads in `rejects` and the Data Docs.

The day's input is three tables: the `customers` snapshot with its history features, and the raw `contact_history`
and `suppression` rows behind those features (sql/daily_contact_history.sql, sql/daily_suppression.sql). A customer
named by any rejected row is left out of the day's plan: their contact rules cannot be trusted, and leaving them
out never contacts someone whose opt-out row is broken.
"""
from __future__ import annotations

import difflib
import json
import time
import zoneinfo
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from retention.config import REPO_ROOT, Config
from retention.infra import bq
from retention.pipeline import data_docs
from retention.messages.schedule import in_quiet_hours

SUITE_DIR = REPO_ROOT / "expectations"

HISTORY_FEATURES = {
    "contacts_in_window": "INT64", "days_since_contact": "INT64", "total_contacts": "INT64",
    "last_outcome": "STRING", "suppressed": "BOOL",
}
"""Columns the extract adds to the `customers` snapshot from contact_history and suppression."""

ROW_CHECKS = {"known_customer": "BOOL", "future_date": "BOOL"}
"""Columns the input SQL adds to raw contact_history / suppression rows for their suites."""

SEND_CHECKS = {"send_quiet": "BOOL", "send_early": "BOOL"}
"""Columns validate_plan derives from send_at and the customer's zone for the contact_plan suite."""

EXTRA_COLUMNS = {"customers": HISTORY_FEATURES, "contact_history": ROW_CHECKS, "suppression": ROW_CHECKS}
"""Non-contract columns a table's frames may carry in the pipeline (typed when present)."""

RELATED = ("contact_history", "suppression")
"""Input tables checked row by row beside `customers`."""

ROW_KEYS = {"customers": ["customer_id"], "contact_history": ["customer_id", "contact_date"],
            "suppression": ["customer_id", "since"], "contact_plan": ["customer_id"]}
"""Columns that name a row of each table in results and rejects."""

INJECTED = {"$iana_time_zones": sorted(zoneinfo.available_timezones())}
"""Values a suite names by placeholder, filled in at load time."""

KINDS = {
    "STRING": {"string", "empty"},
    "INT64": {"integer", "empty"},
    "FLOAT64": {"floating", "integer", "mixed-integer-float", "empty"},
    "BOOL": {"boolean", "empty"},
    "DATE": {"date", "datetime64", "datetime", "empty"},
    "TIMESTAMP": {"datetime64", "datetime", "empty"},
}
"""BigQuery type -> the `infer_dtype(skipna=True)` kinds a pandas column of that type may have."""

REJECT_COLUMNS = ["plan_date", "run_id", "table_name", "customer_id", "field", "value", "reason"]
VALUE_CHARS = 200
"""Longest value kept in `rejects` (a 100 kB name is recorded by its head and its length)."""
SITE = "retention"
BUDGET_TOLERANCE = 1e-6  # a float sum in another order may pass the budget by rounding alone


class SchemaError(ValueError):
    """A frame's columns or types do not match its table's contract."""


class RejectShareError(ValueError):
    """More of the input was rejected than the run may drop; `.rejects` holds the rows to record anyway."""

    rejects: pd.DataFrame


class PlanInvalidError(ValueError):
    """The contact plan breaks an expectation or a plan invariant."""


# schema

def column_types(table: str) -> dict[str, str]:
    """Column -> BigQuery type of the table's contract, sql/schema/<table>.json (`ARRAY<T>` for REPEATED)."""
    return {f["name"]: f"ARRAY<{f['type']}>" if f["mode"] == "REPEATED" else f["type"]
            for f in bq.contract(table)["fields"]}


def check_schema(df: pd.DataFrame, table: str, require_extras: bool = False) -> None:
    """Raise SchemaError unless `df` has the contract's columns, each of its type, and no others.

    The table's EXTRA_COLUMNS (the history features of `customers`) are allowed and typed when present, and
    required with `require_extras`. Column order is free. Row-level problems (nulls in REQUIRED columns, bad
    values) are the suites' job.
    """
    extras = EXTRA_COLUMNS.get(table, {})
    expected = column_types(table) | extras
    missing = [c for c in expected if c not in df.columns and (require_extras or c not in extras)]
    unexpected = [c for c in df.columns if c not in expected]
    renamed = _renamed(missing, unexpected)
    problems = [f"missing column '{c}' ({expected[c]})" + (f", found '{renamed[c]}' instead" if c in renamed else "")
                for c in missing]
    problems += [f"unexpected column '{c}'" for c in unexpected if c not in renamed.values()]
    problems += [f"column '{c}' is {infer_dtype(df[c], skipna=True)}, expected {t}"
                 for c, t in expected.items() if c in df.columns and not _type_ok(df[c], t)]
    if problems:
        raise SchemaError(f"{table} does not match sql/schema/{table}.json: " + "; ".join(problems))


def _type_ok(col: pd.Series, bq_type: str) -> bool:
    if bq_type.startswith("ARRAY<"):
        return all(isinstance(v, (list, tuple, np.ndarray)) for v in col[col.notna()])
    return infer_dtype(col, skipna=True) in KINDS[bq_type]


def _renamed(missing: list[str], unexpected: list[str]) -> dict[str, str]:
    """Missing column -> the unexpected column that is most likely it under another name."""
    pairs = {}
    for c in missing:
        close = difflib.get_close_matches(c, [u for u in unexpected if u not in pairs.values()], n=1, cutoff=0.8)
        if close:
            pairs[c] = close[0]
    return pairs


# suites

def load_suite(table: str) -> list[dict[str, Any]]:
    """The raw specs of expectations/<table>.json, placeholders still in place."""
    return json.loads((SUITE_DIR / f"{table}.json").read_text())


def to_expectation(spec: Mapping[str, Any]):
    """One suite spec -> a GX expectation, placeholders filled, its field and human-readable reason in meta."""
    import great_expectations.expectations as gxe  # importing GX costs ~2.5 s; only the suites pay it

    name = spec["expectation"]
    cls = getattr(gxe, name if name[0].isupper() else "".join(p.title() for p in name.split("_")))
    kwargs = {k: INJECTED[v] if isinstance(v, str) and v.startswith("$") else v for k, v in spec["kwargs"].items()}
    meta = {"field": spec_field(spec), "reason": spec.get("reason") or _reason(cls.__name__, spec["kwargs"])}
    return cls(**kwargs, meta=meta)


def spec_field(spec: Mapping[str, Any]) -> str:
    """The column a spec's failures are reported against."""
    kw = spec["kwargs"]
    return spec.get("field") or kw.get("column") or kw.get("column_B") or kw["column_list"][-1]


def _reason(cls_name: str, kwargs: Mapping[str, Any]) -> str:
    """'expect_column_values_to_be_between(min_value=0, max_value=10000) when contact == True'."""
    snake = "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in cls_name).lstrip("_")
    args = ", ".join(f"{k}={_text(v)}" for k, v in kwargs.items() if k not in ("column", "row_condition"))
    cond = kwargs.get("row_condition")
    when = f" when {cond['column']['name']} {cond['operator']} {cond['parameter']}" if cond else ""
    return f"{snake}({args}){when}"


def _text(value: Any) -> str:
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def suite_columns(table: str) -> list[str]:
    """Every column the suite reads (row conditions included), after the row key."""
    cols = list(ROW_KEYS[table])
    for spec in load_suite(table):
        kw = spec["kwargs"]
        cols += [kw[k] for k in ("column", "column_A", "column_B") if k in kw] + kw.get("column_list", [])
        cols += [kw["row_condition"]["column"]["name"]] if "row_condition" in kw else []
    return list(dict.fromkeys(cols))


def run_suites(frames: Mapping[str, pd.DataFrame], ds: str, run_id: str, report_dir: str | Path,
               part: str = "", docs: Sequence = ()):
    """Run expectations/<table>.json on each frame as a GX checkpoint, then render Data Docs under report_dir.

    Returns {table: ExpectationSuiteValidationResult}, the path of the Data Docs index and the identifiers of the
    pages written. The docs are built once for all the frames' results: building them costs more than validating a
    small day. A chunk of a day streamed in parts names its `part` (e.g. "2 of 20") in the batch; `docs=None`
    skips the Data Docs (an earlier part of a streamed day), a sequence adds earlier parts' identifiers to this
    build (the last part builds every part's pages at once).
    """
    import great_expectations as gx
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    report_dir = Path(report_dir)
    ctx = _context(report_dir)
    source = ctx.data_sources.add_pandas("retention")
    results, ids = {}, []
    for table, df in frames.items():
        batch_name = f"ds={ds}" + (f" part {part}" if part else "")
        batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe(batch_name)
        suite = ctx.suites.add(gx.ExpectationSuite(name=table, expectations=[to_expectation(s)
                                                                             for s in load_suite(table)]))
        validation = ctx.validation_definitions.add(gx.ValidationDefinition(name=table, data=batch, suite=suite))
        checkpoint = ctx.checkpoints.add(gx.Checkpoint(
            name=f"{table}_checkpoint", validation_definitions=[validation],
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ROW_KEYS[table]}))
        run = checkpoint.run(batch_parameters={"dataframe": df}, run_id=gx.RunIdentifier(run_name=f"{ds}_{run_id}"))
        ((key, results[table]),) = run.run_results.items()
        # a whole-DataFrame batch names no asset in its batch spec, where the page looks: "Data asset: None"
        results[table].meta["batch_spec"]["data_asset_name"] = table
        ctx.validation_results_store.set(key, results[table])
        ids += [key, ExpectationSuiteIdentifier(name=table)]  # the suite's page too: the index links to it
    if docs is not None:
        build_docs(report_dir, [*docs, *ids], ctx)
    return results, report_dir / "data_docs" / "index.html", ids


def build_docs(report_dir: Path, ids: Sequence, ctx) -> None:
    """Render the Data Docs pages of `ids` (validation results and suites of `ctx`) and the index."""
    unique = list({str(i): i for i in ids}.values())
    ctx.build_data_docs(site_names=[SITE], resource_identifiers=unique)
    data_docs.make_offline(report_dir / "data_docs")


def _context(report_dir: Path):
    """An ephemeral GX context whose validation results and Data Docs live under report_dir.

    Results are kept on disk (not in memory) so that the Data Docs index lists every validation written under
    report_dir -- the input's and the plan's, of every run of the day -- and `report` can read them back.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import (DataContextConfig, InMemoryStoreBackendDefaults,
                                                            ProgressBarsConfig)

    def on_disk(folder: str) -> dict[str, str]:
        return {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(report_dir / folder)}

    defaults = InMemoryStoreBackendDefaults()
    stores = defaults.stores | {defaults.validation_results_store_name: {
        "class_name": "ValidationResultsStore", "store_backend": on_disk("gx_validations")}}
    config = DataContextConfig(
        store_backend_defaults=defaults, stores=stores, analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={SITE: {"class_name": "SiteBuilder", "store_backend": on_disk("data_docs"),
                                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}}})
    return gx.get_context(mode="ephemeral", project_config=config)


# input

def validate_input(day: pd.DataFrame, ds: str, run_id: str, report_dir: str | Path, max_reject_share: float,
                   related: Mapping[str, pd.DataFrame] | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Check the day's customers frame and the raw `related` rows: every schema first (SchemaError), then the suites.

    Returns (good customers, rejects in the `rejects` contract, summary). Raises RejectShareError when the share
    of the day's customers left out passes `max_reject_share`.
    """
    good, rejects, summary, _ = check_input(day, ds, run_id, report_dir, related)
    check_reject_share(summary, rejects, max_reject_share)
    return good, rejects, summary


def check_input(day: pd.DataFrame, ds: str, run_id: str, report_dir: str | Path,
                related: Mapping[str, pd.DataFrame] | None = None, part: str = "", docs: Sequence | None = ()
                ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], list]:
    """`validate_input` without the reject-share rule, on one chunk (`part`) of a streamed day or all of it:
    (good customers, rejects, summary, Data Docs identifiers). `docs`: as in `run_suites`."""
    start = time.perf_counter()
    frames = {"customers": day, **(related or {})}
    for table, df in frames.items():
        check_schema(df, table, require_extras=True)
    results, report, ids = run_suites(frames, ds, run_id, report_dir, part, docs)
    rejects = pd.concat([to_rejects(results[t], ds, run_id, t) for t in frames], ignore_index=True)
    good = day[day["customer_id"].notna() & ~day["customer_id"].isin(rejects["customer_id"].dropna())]
    rejected = len(day) - len(good)
    summary = {
        "table": "customers", "rows": len(day), "good_rows": len(good), "rejected_rows": rejected,
        "reject_records": len(rejects), "reject_share": rejected / len(day) if len(day) else 0.0,
        "success": all(r.success for r in results.values()),
        "evaluated_expectations": len(results["customers"].results),
        "failed_expectations": sorted({f"{r.expectation_config.meta['field']} {r.expectation_config.meta['reason']}"
                                       for r in results["customers"].results if not r.success}),
        "tables": {t: {"rows": len(df), "reject_records": int((rejects["table_name"] == t).sum())}
                   for t, df in frames.items()},
        "report_uri": str(report), "seconds": round(time.perf_counter() - start, 3),
    }
    return good.reset_index(drop=True), rejects, summary, ids


def merge_input_summaries(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One summary of a day checked in chunks: counts summed, failures joined, the last part's report."""
    total = dict(parts[-1])
    for key in ("rows", "good_rows", "rejected_rows", "reject_records"):
        total[key] = sum(p[key] for p in parts)
    total["reject_share"] = total["rejected_rows"] / total["rows"] if total["rows"] else 0.0
    total["success"] = all(p["success"] for p in parts)
    total["failed_expectations"] = sorted({f for p in parts for f in p["failed_expectations"]})
    total["tables"] = {t: {k: sum(p["tables"][t][k] for p in parts) for k in ("rows", "reject_records")}
                       for t in parts[0]["tables"]}
    total["seconds"] = round(sum(p["seconds"] for p in parts), 3)
    return total


def check_reject_share(summary: dict[str, Any], rejects: pd.DataFrame, max_reject_share: float) -> None:
    """Raise RejectShareError (carrying the rejects) when the day's share of customers left out passes the limit."""
    rejected, rows, share = summary["rejected_rows"], summary["rows"], summary["reject_share"]
    if share > max_reject_share:
        err = RejectShareError(f"customers: rejected {rejected} of {rows} rows ({share:.1%}), more than "
                               f"max_reject_share {max_reject_share:.1%}; top reasons: {_top_reasons(rejects)}; "
                               f"report {summary['report_uri']}")
        err.rejects = rejects  # an attribute, not an init arg, so the error still pickles
        raise err


def to_rejects(result, ds: str, run_id: str, table: str) -> pd.DataFrame:
    """One row per (row, field, reason) problem in a suite result, in the `rejects` contract.

    Where customer_id alone does not name the row (contact_history, suppression), the reason ends with the rest of
    the row key, e.g. "... [contact_date=2026-05-01]".
    """
    rows = []
    for r in result.results:
        if r.success:
            continue
        field, reason = r.expectation_config.meta["field"], r.expectation_config.meta["reason"]
        if "unexpected_index_list" not in r.result:  # not a row-level result: the suite or the frame is broken
            raise RuntimeError(f"{table}: {field} {reason} could not be evaluated row by row: {r.exception_info}")
        for row in r.result["unexpected_index_list"]:
            key = ", ".join(f"{k}={_scalar(row[k])}" for k in ROW_KEYS[table][1:])
            rows.append((_scalar(row["customer_id"]), field, _value(row.get(field)),
                         f"{reason} [{key}]" if key else reason))
    rejects = pd.DataFrame(rows, columns=["customer_id", "field", "value", "reason"], dtype=object)
    rejects = rejects.drop_duplicates().sort_values(["customer_id", "field", "reason"], na_position="first")
    rejects.insert(0, "plan_date", pd.Timestamp(ds).date())
    rejects.insert(1, "run_id", run_id)
    rejects.insert(2, "table_name", table)
    return rejects[REJECT_COLUMNS].astype({c: "str" for c in REJECT_COLUMNS[1:]}).reset_index(drop=True)


def _scalar(value: Any) -> str | None:
    """A cell as the string the rejects table stores (NULL stays None)."""
    return None if pd.isna(value) else str(value)


def _value(value: Any) -> str | None:
    """A rejected value as stored: its head when it is absurdly long."""
    text = _scalar(value)
    if text is None or len(text) <= VALUE_CHARS:
        return text
    return f"{text[:VALUE_CHARS]}... ({len(text)} characters)"


def _top_reasons(rejects: pd.DataFrame, n: int = 3) -> str:
    counts = rejects.groupby(["field", "reason"]).size().sort_values(ascending=False, kind="stable").head(n)
    return ", ".join(f"{field} {reason} x{k}" for (field, reason), k in counts.items())


# plan

def send_checks(plan: pd.DataFrame, ds: str, quiet_start: int, quiet_end: int, window_hour: int) -> pd.DataFrame:
    """SEND_CHECKS per row: send_at inside the customer's local quiet hours, send_at before the day's send window
    opens (ds at window_hour:00 UTC)."""
    out = pd.DataFrame({c: np.zeros(len(plan), dtype=bool) for c in SEND_CHECKS}, index=plan.index)
    sent = plan[plan["send_at"].notna()]
    for zone, rows in sent.groupby("time_zone"):
        local = pd.to_datetime(rows["send_at"], utc=True).dt.tz_convert(zone)
        out.loc[rows.index, "send_quiet"] = in_quiet_hours(local.dt.hour.to_numpy(), quiet_start, quiet_end)
        out.loc[rows.index, "send_early"] = (local < pd.Timestamp(ds, tz="UTC") + pd.Timedelta(hours=window_hour)).to_numpy()
    return out


PLAN_EXTRAS = ("send_at", "time_zone", "contact", "offer_cost", "holdout", "customer_id")
"""Plan columns validate_plan reads besides the suite's."""


def plan_columns() -> list[str]:
    """Every plan column validate_plan reads (a streamed day reads only these)."""
    return list(dict.fromkeys([c for c in suite_columns("contact_plan") if c not in SEND_CHECKS] + list(PLAN_EXTRAS)))


def validate_plan(plan: pd.DataFrame, cfg: Config, ds: str, run_id: str, report_dir: str | Path) -> dict[str, Any]:
    """Check the day's plan with the contact_plan suite and the budget; raise PlanInvalidError on any failure."""
    return finish_plan([check_plan(plan, cfg, ds, run_id, report_dir)], cfg)


def check_plan(plan: pd.DataFrame, cfg: Config, ds: str, run_id: str, report_dir: str | Path, part: str = "",
               docs: Sequence | None = ()) -> dict[str, Any]:
    """The contact_plan suite on the plan or one chunk (`part`) of a streamed day: its failures, the figures the
    budget rule and the summary add up (`finish_plan`), and the Data Docs identifiers. `docs`: as in `run_suites`."""
    start = time.perf_counter()
    needed = [c for c in suite_columns("contact_plan") if c not in SEND_CHECKS] + ["send_at", "time_zone"]
    missing = [c for c in dict.fromkeys(needed) if c not in plan.columns]
    if missing:
        raise PlanInvalidError(f"contact_plan lacks column(s) {missing} read by expectations/contact_plan.json")
    checked = plan[list(dict.fromkeys(needed))].join(send_checks(plan, ds, cfg.quiet_start_hour, cfg.quiet_end_hour,
                                                                     cfg.send_window_start_hour))
    results, report, ids = run_suites({"contact_plan": checked}, ds, run_id, report_dir, part, docs)
    result = results["contact_plan"]
    contacted = plan["contact"].fillna(False).astype(bool)
    return {"problems": [_failure(r) for r in result.results if not r.success], "rows": len(plan),
            "contacted": int(contacted.sum()), "holdout": int(plan["holdout"].fillna(False).astype(bool).sum()),
            "spend": float(plan.loc[contacted, "offer_cost"].sum()),
            "largest": plan.loc[contacted].nlargest(5, "offer_cost")[["customer_id", "offer_cost"]],
            "evaluated_expectations": len(result.results), "report_uri": str(report), "ids": ids,
            "seconds": time.perf_counter() - start}


def finish_plan(parts: Sequence[dict[str, Any]], cfg: Config) -> dict[str, Any]:
    """The day's verdict from its checked parts: every part's failures and the budget over all of them; raise
    PlanInvalidError on any."""
    problems = [p for part in parts for p in part["problems"]]
    spend = sum(p["spend"] for p in parts)
    if spend > cfg.daily_budget + BUDGET_TOLERANCE:
        top = pd.concat([p["largest"] for p in parts]).nlargest(5, "offer_cost")["customer_id"].tolist()
        problems.append(f"budget: sum of offer_cost over contacted rows {spend:.2f} > daily_budget "
                        f"{cfg.daily_budget:.2f}, largest offers {top}")
    report = parts[-1]["report_uri"]
    if problems:
        raise PlanInvalidError("contact_plan invalid: " + "; ".join(problems) + f"; report {report}")
    return {
        "table": "contact_plan", "rows": sum(p["rows"] for p in parts),
        "contacted": sum(p["contacted"] for p in parts), "holdout": sum(p["holdout"] for p in parts),
        "spend": spend, "budget": cfg.daily_budget, "success": True,
        "evaluated_expectations": parts[0]["evaluated_expectations"], "report_uri": report,
        "seconds": round(sum(p["seconds"] for p in parts), 3),
    }


def _failure(r) -> str:
    """'offer_level expect_...(...) when contact == True: 2 rows, e.g. ['C1', 'C7']'."""
    what = f"{r.expectation_config.meta['field']} {r.expectation_config.meta['reason']}"
    if "unexpected_index_list" not in r.result:
        return f"{what}: could not be evaluated ({r.exception_info})"
    ids = list(dict.fromkeys(_scalar(row["customer_id"]) for row in r.result["unexpected_index_list"]))
    return f"{what}: {r.result['unexpected_count']} rows, e.g. {ids[:5]}"


# report

def latest_validations(report_dir: str | Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """The newest run name under report_dir/gx_validations and {suite: its stored validation result (JSON)}."""
    stored = [json.loads(p.read_text()) for p in Path(report_dir, "gx_validations").glob("*/*/*/*.json")]
    if not stored:
        return "", {}
    latest = max(stored, key=lambda v: v["meta"]["run_id"]["run_time"])["meta"]["run_id"]["run_name"]
    runs = sorted((v for v in stored if v["meta"]["run_id"]["run_name"] == latest),
                  key=lambda v: v["meta"]["run_id"]["run_time"])
    return latest, {v["suite_name"]: v for v in runs}  # a retried stage's later result wins


def report(cfg: Config, ds: str) -> str:
    """The day's data-quality summary: the latest validated run, each suite's results, its rejects, the HTML path."""

    report_dir = cfg.artifacts / "reports" / ds
    run_name, suites = latest_validations(report_dir)
    if not suites:  # an error, as `summary` for a day without a run: the caller exits non-zero
        raise LookupError(f"no validation results for {ds} under {report_dir}: has the day run?")
    run_id = run_name.removeprefix(f"{ds}_")
    client, day = bq.client(cfg), pd.Timestamp(ds).date()
    rejects = bq.query(client, cfg, bq.sql_text("report_rejects", cfg),
                       ds=day, run_id=run_id)
    runs = bq.query(client, cfg, bq.sql_text("report_run", cfg), ds=day, run_id=run_id)
    lines = [f"Data quality for {ds}, run {run_id}"]
    lines += [("  published: " + ", ".join(f"{k} {v}" for k, v in runs.iloc[0].items())) if len(runs)
              else "  not published (stopped before publish)"]
    order = [*ROW_KEYS, *suites]  # input tables first, then the plan
    lines += ["  suites:"] + [_suite_line(name, suites[name]) for name in dict.fromkeys(order) if name in suites]
    lines += [f"  rejects: {len(rejects)} rows naming {rejects['customer_id'].nunique()} customer_ids"
              if len(rejects) else "  rejects: none"]
    lines += _reject_lines(rejects)
    lines += [f"report: {report_dir / 'data_docs' / 'index.html'}"]
    return "\n".join(lines)


def _suite_line(name: str, validation: Mapping[str, Any]) -> str:
    stats = validation["statistics"]
    failed = [f"{r['expectation_config']['meta']['field']} {r['expectation_config']['meta']['reason']} "
              f"({r['result'].get('unexpected_count', '?')} rows)" for r in validation["results"] if not r["success"]]
    head = (f"    {name:<16}{stats['successful_expectations']}/{stats['evaluated_expectations']} expectations "
            f"passed")
    return head + "".join(f"\n      failed: {f}" for f in failed)


def _reject_lines(rejects: pd.DataFrame) -> list[str]:
    """Reject rows per table, then per field (values stay out: they may be names)."""
    lines = []
    for table, rows in rejects.groupby("table_name", sort=False):
        fields = rows["field"].value_counts(sort=True)
        lines.append(f"    {table}: {len(rows)} ({', '.join(f'{f} {k}' for f, k in fields.items())})")
    return lines
