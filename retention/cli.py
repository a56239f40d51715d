"""`retention`: the project's command line (embedded BigQuery, seeding, training, the plan, queries)."""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import sys
import uuid

import pandas as pd
from google.api_core.exceptions import GoogleAPICallError, GoogleAPIError

from retention.config import Config, load_config

log = logging.getLogger("retention")



def _day(text: str) -> str:
    """An ISO date argument, checked."""
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def cmd_bq(cfg: Config, args: argparse.Namespace) -> None:
    from retention.infra import bq, emulator

    emu = emulator.for_config(cfg)
    if args.action == "up":
        print(emulator.up(emu, cfg.project))
        bq.ensure_tables(bq.client(cfg), cfg)
    elif args.action == "down":
        print(emulator.down(emu))
    elif emulator.is_up(emu):
        print(emulator.status(emu))
    else:
        sys.exit(emulator.status(emu))


def cmd_seed(cfg: Config, args: argparse.Namespace) -> None:
    """Snapshots for the `days` days ending at ds (same customers each day), history and suppressions as of ds."""
    from retention.infra import bq
    from retention.datasets import seed
    from retention.datasets.telco import read_telco

    last = dt.date.fromisoformat(args.ds)
    telco = read_telco(cfg.data_dir)
    client = bq.client(cfg)
    bq.ensure_tables(client, cfg)
    for offset in range(args.days - 1, -1, -1):
        day = last - dt.timedelta(days=offset)
        if args.synthetic:
            customers = seed.synthetic_customers(args.synthetic, day, args.seed, telco)
        else:
            customers = seed.customers_from_telco(telco, day)
        bq.replace_partition(client, cfg, customers, "customers", "snapshot_date", day)
    history = seed.history_for(customers, last, args.seed)
    suppression = seed.suppression_for(customers, last, args.seed)
    bq.execute(client, bq.sql_text("seed_trim_history", cfg), ds=last)
    bq.load(client, history, "contact_history", cfg.table("contact_history"), truncate=False)
    bq.load(client, suppression, "suppression", cfg.table("suppression"))
    first = last - dt.timedelta(days=args.days - 1)
    print(f"seeded {first} .. {last}: {len(customers):,} customers a day, {len(history):,} history rows, "
          f"{len(suppression):,} suppressions in {cfg.project}.{cfg.dataset}")


def cmd_train(cfg: Config, args: argparse.Namespace) -> None:
    from retention.infra import jobs

    names = ["risk", "accept", "policy"] if args.model == "all" else [args.model]
    for name in names:
        if args.missing and (cfg.model_dir(name) / "metrics.json").exists():  # a champion is there
            print(f"{name}: champion present at {cfg.model_dir(name)}, not retrained")
            continue
        extra = ["--profile", args.profile] + (["--no-promote"] if args.no_promote else [])
        jobs.run_local(f"train_{name}", jobs.common_args(cfg) + extra)


def cmd_plan(cfg: Config, args: argparse.Namespace) -> None:
    from retention.pipeline import daily

    run_id = args.run_id or f"cli__{args.ds}__{uuid.uuid4().hex[:8]}"
    summary = daily.run_all(cfg, args.ds, run_id)
    print(json.dumps(summary["publish"], indent=1, default=str))


def cmd_decide(cfg: Config, args: argparse.Namespace) -> None:
    """One customer's decision and shielded message with the champions; nothing is written."""
    from retention.pipeline import retain

    try:
        facts = json.loads(args.json) if args.json else retain.facts_for_customer(cfg, args.customer_id, args.ds)
    except json.JSONDecodeError as err:
        sys.exit(f"--json is not valid JSON: {err}")
    if not isinstance(facts, dict):
        sys.exit(f"--json must be an object of customer facts, not {type(facts).__name__}")
    retain.validate_facts(facts, args.ds)  # bad facts are named before anything is asked of BigQuery
    published = None if args.full_budget else retain.published_budget_left(cfg, args.ds)
    if published is None:
        left, source = None, ("the full daily budget (--full-budget)" if args.full_budget else
                              f"the full daily budget: no plan was published for {args.ds}")
    else:
        left, source = published
    print(json.dumps(retain.decide_one(cfg, facts, args.ds, left, source), indent=1, default=str))


def cmd_serve(cfg: Config, args: argparse.Namespace) -> None:
    """The online decision service: GET /healthz, GET /readyz, POST /retain (docs at /docs)."""
    import uvicorn

    from retention.serve.app import create_app

    uvicorn.run(create_app(cfg), host=args.host, port=args.port, log_level="info")


def cmd_backfill(cfg: Config, args: argparse.Namespace) -> None:
    """Run the daily plan for every day in [start, end], in order; each day replaces its own partition."""
    from retention.pipeline import daily

    start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    if end < start:
        sys.exit(f"--end {end} is before --start {start}")
    for offset in range((end - start).days + 1):
        ds = (start + dt.timedelta(days=offset)).isoformat()
        summary = daily.run_all(cfg, ds, f"backfill__{ds}__{uuid.uuid4().hex[:8]}")
        print(f"{ds}: {json.dumps(summary['publish'], default=str)}")


def cmd_ope(cfg: Config, args: argparse.Namespace) -> None:
    """Value of a candidate policy from logged decisions: IPS, SNIPS and DR per customer, intervals and ESS."""
    from retention.simulation import ope
    from retention.deciding.policy import load_policy

    start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    if end < start:
        sys.exit(f"--end {end} is before --start {start}")
    target = load_policy(args.policy or cfg.model_dir("policy"))
    if target is None:
        sys.exit(f"no policy in {args.policy or cfg.model_dir('policy')}")
    if args.simulate:
        behaviour, days = ope.tempered(target, args.temperature, args.epsilon), (end - start).days + 1
        sim = ope.telco_simulator(cfg, start, days, args.customers)
        episodes = [(args.seed + i, start + dt.timedelta(days=days * i)) for i in range(args.episodes)]
        logs, truth = ope.simulate_logs(sim, behaviour, target, episodes)
        source = f"{behaviour.version} in the simulator ({len(sim.ids):,} customers, {args.episodes} x {days} days)"
    else:
        from retention.infra import bq
        from retention.pipeline import outcomes
        from retention.scoring.accept import AcceptModel
        from retention.simulation.simulator import AcceptTable

        client = bq.client(cfg)
        logs = ope.logged_data(client, cfg, start, end)
        if logs.empty:
            sys.exit(f"no logged plans in {start} .. {end}")
        logs, truth = ope.logged_decisions(logs, cfg, target), None
        source = f"{', '.join(logs['policy_model'].unique())} in contact_plan"
        if args.truth:
            table = AcceptTable(AcceptModel.load(cfg.model_dir("accept")))
            truth = outcomes.replay_value(client, cfg, target, table, start, end)
    est = ope.estimate(logs, n_boot=args.n_boot, seed=args.seed)
    if truth is not None:
        est = est.assign(truth=truth, rel_error=(est["value"] - truth) / abs(truth))
    logged = logs["reward"].sum() / est["customers"].iloc[0]  # what the behaviour itself earned, for comparison
    print(f"target {target.version}; {len(logs):,} decisions logged by {source} from {start}; logged value "
          f"{logged:.3f} per customer")
    print("value: net revenue retained per customer over the window; lo, hi: 95 % bootstrap interval; ess: effective "
          "customers; mean_weight: about 1 when the logs are sound")
    print(_table(est.round(3)))


def cmd_simulate_outcomes(cfg: Config, args: argparse.Namespace) -> None:
    """Simulated outcomes of the published contacts of each day in [start, end], in order, into contact_history."""
    from retention.infra import bq
    from retention.pipeline import daily, outcomes
    from retention.scoring.accept import AcceptModel
    from retention.simulation.simulator import AcceptTable

    start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    if end < start:
        sys.exit(f"--end {end} is before --start {start}")
    client, table = bq.client(cfg), AcceptTable(AcceptModel.load(cfg.model_dir("accept")))
    for offset in range((end - start).days + 1):
        ds = start + dt.timedelta(days=offset)
        if args.plan:
            daily.run_all(cfg, ds.isoformat(), f"outcomes__{ds}__{uuid.uuid4().hex[:8]}")
        history = outcomes.simulate_day(client, cfg, ds, table)
        print(f"{ds}: {len(history):,} contacts, {int(history['accepted'].sum()):,} accepted, "
              f"{int(history['churned'].sum()):,} churned")


def cmd_impact(cfg: Config, args: argparse.Namespace) -> None:
    """Incremental retention of the plans of [start, end] against the holdout, by segment; replaces their `impact`
    rows."""
    from retention.infra import bq
    from retention.pipeline import impact

    start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    if end < start:
        sys.exit(f"--end {end} is before --start {start}")
    table, said, paths = impact.run(bq.client(cfg), cfg, start, end)
    print(_table(table.drop(columns=["window_start", "window_end"]).round(4)))
    print(said)
    print("\n".join(str(p) for p in paths))


def cmd_query(cfg: Config, args: argparse.Namespace) -> None:
    from retention.infra import bq

    sql = args.sql or bq.sql_text("example_plan_by_offer", cfg)
    params = {"ds": dt.date.fromisoformat(args.ds)} if "@ds" in sql else {}
    if not args.sql:
        print(sql)
    rows, total = bq.user_query(bq.client(cfg), cfg, sql, **params)
    print(_table(rows))
    if total > len(rows):
        print(f"(first {len(rows):,} of {total:,} rows)")


def cmd_summary(cfg: Config, args: argparse.Namespace) -> None:
    from retention.infra import bq

    client = bq.client(cfg)
    runs = bq.query(client, cfg, bq.sql_text("summary_latest_run", cfg), ds=dt.date.fromisoformat(args.ds))
    if runs.empty:
        sys.exit(f"no run recorded in plan_runs for {args.ds}")
    run = runs.iloc[0]
    print(f"\nRun {run['run_id']} for {args.ds}")
    for key in ("customers", "rejected", "contacted", "contact_rate", "messages", "followups", "holdout", "budget",
                "spend", "expected_net_revenue", "incremental_customers", "expected_cost",
                "cost_per_incremental_customer", "roi", "violations", "report_uri"):
        print(f"  {key:<30}{run[key]}")
    print(f"  {'stage_seconds':<30}{run['stage_seconds']}")
    print(f"  {'model_versions':<30}{run['model_versions']}")
    day = dt.date.fromisoformat(args.ds)
    messages = bq.query(client, cfg, bq.sql_text("summary_messages", cfg), ds=day)
    print("\nMessages by generator and shield action:")
    print(_table(messages))
    samples = bq.query(client, cfg, bq.sql_text("summary_samples", cfg), ds=day)
    print("\nThree sample messages (highest expected value):")
    for _, r in samples.iterrows():
        print(f"  {r['customer_id']} [{r['generator']}, offer {r['offer_pct']:.0%}, send {r['send_at']}]: {r['message']}")
    _impact_summary(cfg, client, day)
    print("\nExample query (bq query --use_legacy_sql=false, or `retention query`):")
    cmd_query(cfg, argparse.Namespace(sql=None, ds=args.ds))


def _impact_summary(cfg: Config, client, day: dt.date) -> None:
    """The daily impact task's report of `day`: the headline rows of the window ending the outcome horizon before it,
    and its pictures (Qini, weekly lift) under the artifact root."""
    from retention.infra import bq
    from retention.pipeline import impact

    end = day - dt.timedelta(days=impact.HORIZON_DAYS)
    rows = bq.query(client, cfg, bq.sql_text("summary_impact", cfg), end=end)
    print(f"\nImpact against the holdout, plans up to {end} (outcomes over {impact.HORIZON_DAYS} days):")
    if rows.empty:
        print("  no impact report for this window yet (no outcomes, or the daily DAG's impact task has not run)")
        return
    print(_table(rows.round(4)))
    for path in impact.pictures(cfg, end):
        print(f"  {path.stem:<30}{path}")


def cmd_report(cfg: Config, args: argparse.Namespace) -> None:
    from retention.pipeline import quality

    print(quality.report(cfg, args.ds))


def cmd_deploy(cfg: Config, args: argparse.Namespace) -> None:
    from retention.infra import deploy

    sys.exit(deploy.main(args.rest))


def _table(df: pd.DataFrame) -> str:
    """Rows as text: numbers right-aligned, text left-aligned."""
    if df.empty:
        return "(no rows)"
    text = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])]
    return df.to_string(index=False, justify="left", formatters={c: _left(df[c]) for c in text})


def _left(column: pd.Series):
    width = max(len(str(column.name)), *(len(str(v)) for v in column))
    return lambda value: f"{str(value):<{width}}"


def _window(s: argparse.ArgumentParser, what: str = "plan_date") -> None:
    """--start and --end, the inclusive range of days a command works on."""
    s.add_argument("--start", type=_day, required=True, help=f"first {what} (inclusive)")
    s.add_argument("--end", type=_day, required=True, help=f"last {what} (inclusive)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="retention", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("bq", help="start, stop or inspect the embedded BigQuery emulator")
    s.add_argument("action", choices=["up", "down", "status"])
    s.set_defaults(func=cmd_bq)

    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    s = sub.add_parser("seed", help="load a customers snapshot (IBM Telco or synthetic) with history and suppressions")
    s.add_argument("--ds", type=_day, default=today, help="snapshot date (default: today, UTC)")
    s.add_argument("--synthetic", type=int, default=0, metavar="N", help="N synthetic customers instead of Telco's")
    s.add_argument("--days", type=int, default=1, help="snapshots for this many days ending at --ds (backfills)")
    s.add_argument("--seed", type=int, default=42, help="random seed (combined with ds)")
    s.set_defaults(func=cmd_seed)

    s = sub.add_parser("train", help="train a model as a local job (training/train_<model>.py); promoted when its gate passes")
    s.add_argument("model", nargs="?", default="all",
                   choices=["risk", "accept", "policy", "uplift", "sft", "reward", "judge", "ppo_text", "all"],
                   help="all = risk, accept, then policy (uplift and the RLHF models train with their own names)")
    s.add_argument("--profile", default="quick", choices=["quick", "full"])
    s.add_argument("--missing", action="store_true", help="only models without a champion")
    s.add_argument("--no-promote", action="store_true", help="evaluate the gate but never promote")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("plan", help="run the daily plan for one day in this process (Airflow runs the same stages)")
    s.add_argument("--ds", type=_day, required=True,
                   help="the plan date (YYYY-MM-DD): the snapshot it reads, the contact_plan partition it replaces")
    s.add_argument("--run-id", default="", help="run id (default: cli__<ds>__<random>)")
    s.set_defaults(func=cmd_plan)

    s = sub.add_parser("decide", help="one customer's decision and message with the champions (writes nothing)")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer-id", help="a customer of the --ds snapshot")
    who.add_argument("--json", help="customer facts as JSON (the customers columns; history optional)")
    s.add_argument("--ds", type=_day, default=today,
                   help="the customers snapshot to decide on (default: today, UTC)")
    s.add_argument("--full-budget", action="store_true",
                   help="decide with the whole daily budget; by default with what the day's published plan left of it "
                        "(the whole budget when no plan was published); the output's `budget` says which")
    s.set_defaults(func=cmd_decide)

    s = sub.add_parser("serve", help="the online decision service: POST /retain, GET /healthz and /readyz")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; the Airflow UI has 8080)")
    s.add_argument("--host", default="127.0.0.1", help="interface (default loopback; 0.0.0.0 in a container)")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("backfill", help="run the daily plan for a range of days in this process, in order")
    _window(s, "day")
    s.set_defaults(func=cmd_backfill)

    s = sub.add_parser("query", help="run SQL against the configured BigQuery (default: an example over the plan)")
    s.add_argument("sql", nargs="?", help="standard SQL; @ds is bound to --ds")
    s.add_argument("--ds", type=_day, default=today, help="date bound to @ds in the SQL (default: today, UTC)")
    s.set_defaults(func=cmd_query)

    s = sub.add_parser(
        "ope", help="off-policy estimate of a candidate policy from logged plans and outcomes (or the simulator)",
        description="Estimate a candidate policy's net revenue retained per customer over [start, end] from decisions "
                    "another policy logged: IPS, SNIPS and doubly robust, per-decision importance weights over each "
                    "customer's sequence, 95 % bootstrap intervals over customers, effective sample size. By default "
                    "from the warehouse: contact_plan and its outcomes in contact_history (simulate them with "
                    "`retention simulate-outcomes`). With --simulate: from logs the simulator makes over the same "
                    "dates, with the simulated truth and the relative error of each estimate.")
    _window(s)
    s.add_argument("--policy", default="", help="candidate policy directory (default: the policy champion)")
    s.add_argument("--truth", action="store_true",
                   help="warehouse: also the candidate's simulated truth, replayed on the same days with simulated "
                        "outcomes, and the relative error")
    s.add_argument("--n-boot", type=int, default=500, help="bootstrap replicates (default 500)")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed; with --simulate also the first episode's")
    sim = s.add_argument_group("simulator (--simulate)")
    sim.add_argument("--simulate", action="store_true",
                     help="logs from the simulator (IBM Telco scored by the champions) instead of the warehouse")
    sim.add_argument("--temperature", type=float, default=1.0,
                     help="behaviour = the candidate's logits divided by this (default 1: the candidate itself)")
    sim.add_argument("--epsilon", type=float, default=0.0,
                     help="behaviour mixes each head with the uniform at this rate (default 0)")
    sim.add_argument("--episodes", type=int, default=3,
                     help="episodes: consecutive windows as long as [start, end], seeds --seed.. (default 3)")
    sim.add_argument("--customers", type=int, default=0,
                     help="a sample of this many customers, budget scaled (default 0: all 7,043)")
    s.set_defaults(func=cmd_ope)

    s = sub.add_parser(
        "simulate-outcomes", help="simulate what contacted customers did and write it to contact_history (demo)",
        description="For each day in [start, end], in order: draw the outcome (accepted, churned) of every contact "
                    "in that day's published plan with the simulator's dynamics, and replace that day's slice of "
                    "contact_history (contact_date = plan_date = day), so a rerun gives the same rows, never "
                    "duplicates. The next day's plan reads them (cooldown, fatigue, history): simulate a day before "
                    "planning the next, or use --plan.")
    _window(s)
    s.add_argument("--plan", action="store_true",
                   help="run the daily plan of each day first (a backfill whose days see the outcomes before them)")
    s.set_defaults(func=cmd_simulate_outcomes)

    s = sub.add_parser(
        "impact", help="incremental retention against the holdout, with its interval, by segment; writes impact",
        description="From the outcomes table (`retention simulate-outcomes` writes it in the demo): churn over the "
                    "horizon of every eligible customer-day the plans decided on against the eligible holdout "
                    "(intent-to-treat, the headline), the lift with a 95 % customer bootstrap interval, p-value, "
                    "minimum detectable effect, incremental customers and revenue, cost and ROI, by channel, risk "
                    "decile, week and offer level. Replaces the window's rows of `impact`; draws a Qini curve and "
                    "the weekly lift under <artifact root>/reports/impact/<start>_<end>/.")
    _window(s)
    s.set_defaults(func=cmd_impact)

    s = sub.add_parser("summary", help="the latest run of a day and an example query over its plan")
    s.add_argument("--ds", type=_day, default=today,
                   help="the plan date whose latest run to show (default: today, UTC)")
    s.set_defaults(func=cmd_summary)

    s = sub.add_parser("report", help="the day's data-quality summary and the path of its HTML report")
    s.add_argument("--ds", type=_day, default=today,
                   help="the plan date whose data-quality results to show (default: today, UTC)")
    s.set_defaults(func=cmd_report)
    # deploy parses its own arguments (retention/infra/deploy.py), --help included: main() hands them over
    s = sub.add_parser("deploy", add_help=False,
                       help="sync DAGs, package, SQL and suites to a Composer bucket (`retention deploy --help`)")
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_deploy)
    return p


USER_ERRORS = (ValueError, LookupError, OSError, GoogleAPIError)
"""What a command reports as one line and exit status 1 (with -v, the traceback): bad input, missing data or
files, BigQuery's answer (bad SQL, a missing table, an endpoint that does not answer). Anything else is a bug."""


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args, extra = p.parse_known_args(argv)
    if args.command == "deploy":
        args.rest = extra + args.rest
    elif extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO is registry chatter
    logging.getLogger("alembic").setLevel(logging.WARNING)  # GX's SQL datasources load alembic's plugins, loudly
    try:
        args.func(_labelled(load_config(), args), args)
        sys.stdout.flush()  # here, so that a reader gone early is a BrokenPipeError below, not a shutdown warning
    except BrokenPipeError:  # `retention summary | head` closed the pipe: stop quietly, as `yes | head` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except USER_ERRORS as err:
        if args.verbose:
            raise
        sys.exit(f"retention {args.command}: {_one_line(err)}")


def _labelled(cfg: Config, args: argparse.Namespace) -> Config:
    """The config with the command (and its --ds) as BigQuery job labels, unless labels are configured."""
    if cfg.bq_labels:
        return cfg
    ds = vars(args).get("ds")
    return dataclasses.replace(cfg, bq_labels=f"command={args.command}" + (f",ds={ds}" if ds else ""))


def _one_line(err: BaseException) -> str:
    """An error as one line: BigQuery's own message without the client's job details."""
    if isinstance(err, GoogleAPICallError) and err.errors:
        return f"BigQuery: {err.errors[0].get('message', err.message)}"
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    main()
