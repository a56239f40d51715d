"""`python -m bench.serve`: POST /retain over the loopback, its latency, throughput and where the time goes, and a
bounded load test that must end with zero errors and zero budget overspend.

    .venv/bin/retention bq up && .venv/bin/retention train --missing --profile quick
    .venv/bin/python -m bench.serve                                    # 300 requests, then 50 clients for 30 s
    .venv/bin/python -m bench.serve --requests 100 --clients 8 --seconds 10 --budget 2000

Each phase starts `retention serve` in its own process on a free port against the configured BigQuery (dataset
`bench`, the embedded emulator by default) and sends one distinct IBM Telco customer per request:
- latency: one client, requests one after another, an online budget that never binds: p50/p95/p99 ms and
  requests/s, and the share of the server's time in scoring, deciding, messages and BigQuery (BigQuery and the
  decision from each response's Server-Timing header; the decision split into its stages by timing the stages of
  `retain.decide_one` in this process on the same customers);
- load: `--clients` concurrent clients for `--seconds` with an online budget of `--budget`, which runs out: requests/s,
  percentiles, errors (any status but 200), and overspend (what online_budget reserved, and what online_decisions
  logged, beyond the budget).
The clients share the machine's cores with the server, so the load figures are a floor. Prints a table and writes
<artifact root>/bench/serve.json.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import psutil

from retention.config import REPO_ROOT, Config, load_config
from retention.datasets.seed import customers_from_telco
from retention.datasets.telco import read_telco
from retention.infra import bq, emulator
from retention.pipeline import retain
from retention.serve import budget

DATASET = "bench"
LATENCY_DAY, LOAD_DAY = dt.date(2099, 12, 30), dt.date(2099, 12, 31)
"""Days no plan uses: their online_budget and online_decisions rows are deleted before each run."""
TARGET_P99_MS = 100.0
"""The issue's aim for one client with the template generator."""


# the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(online_budget: float) -> Iterator[tuple[str, psutil.Process]]:
    """`retention serve` on a free loopback port with the online budget given; yields its base URL and process once
    ready."""
    port, log = _free_port(), tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    env = {**os.environ, "RETENTION_DATASET": DATASET, "RETENTION_ONLINE_DAILY_BUDGET": str(online_budget)}
    proc = subprocess.Popen([sys.executable, "-m", "retention.cli", "serve", "--port", str(port)], cwd=REPO_ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"retention serve did not get ready:\n{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        os.unlink(log.name)


def _ready(url: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    return False


# the customers


def customer_facts(cfg: Config, day: dt.date) -> list[dict[str, Any]]:
    """Every IBM Telco customer as request facts (JSON values), ids unique to the day."""
    rows = customers_from_telco(read_telco(cfg.data_dir), day).drop(columns=["snapshot_date"])
    facts = json.loads(rows.to_json(orient="records"))
    return [f | {"customer_id": f"BENCH-{day:%m%d}-{f['customer_id']}"} for f in facts]


def reset(client, cfg: Config, day: dt.date) -> None:
    """Forget the day's online budget and decisions (the bench days are the bench's own)."""
    bq.execute(client, f"DELETE FROM `{cfg.table('online_budget')}` WHERE budget_date = @d", d=day)
    bq.execute(client, f"DELETE FROM `{cfg.table('online_decisions')}` WHERE decision_date = @d", d=day)


# the phases


def post(http: httpx.Client, url: str, facts: dict, day: dt.date) -> tuple[int, float, dict[str, float]]:
    """(status, seconds, Server-Timing phases in seconds) of one POST /retain."""
    start = time.perf_counter()
    r = http.post(f"{url}/retain", json={"customer_facts": facts, "ds": day.isoformat()}, timeout=60)
    seconds = time.perf_counter() - start
    phases = {}
    for item in filter(None, r.headers.get("server-timing", "").split(",")):
        name, dur = item.strip().split(";dur=")
        phases[name] = float(dur) / 1000
    return r.status_code, seconds, phases


def latency(url: str, server: psutil.Process, emulator: psutil.Process | None, customers: list[dict],
            n: int) -> dict[str, Any]:
    """n requests one after another from one client (after 10 not counted, to warm the connection and caches), and
    the CPU seconds the server and the emulator spent on them (what the latency would be on idle cores, BigQuery's
    network aside)."""
    with httpx.Client() as http:
        for facts in customers[-10:]:
            post(http, url, facts, LATENCY_DAY)
        cpu = [_cpu(server), _cpu(emulator)]
        start = time.perf_counter()
        results = [post(http, url, facts, LATENCY_DAY) for facts in customers[:n]]
        wall = time.perf_counter() - start
        cpu = [_cpu(server) - cpu[0], _cpu(emulator) - cpu[1]]
    seconds = np.array([s for _, s, _ in results])
    timings = {k: sum(p.get(k, 0.0) for _, _, p in results) for k in ("total", "decide", "bq")}
    return {"requests": n, "errors": sum(status != 200 for status, _, _ in results), **_percentiles(seconds),
            "requests_per_s": n / wall, "client_s": float(seconds.sum()), "server_s": timings,
            "server_cpu_ms": 1000 * cpu[0] / n, "emulator_cpu_ms": 1000 * cpu[1] / n}


def _cpu(process: psutil.Process | None) -> float:
    """User + system CPU seconds of a process and its children so far (0 without one)."""
    if process is None:
        return 0.0
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def decide_split(cfg: Config, customers: list[dict], n: int) -> dict[str, float]:
    """Seconds of `retain.decide_one` by stage over n customers, timed in this process around its stage functions."""
    spent: dict[str, float] = {"scoring": 0.0, "deciding": 0.0, "messages": 0.0}
    stages = {"score": "scoring", "decide_plan": "deciding"}
    modules = {"generate": retain.generator, "shield": retain.shield_rules, "send_at": retain.schedule}
    saved = {name: getattr(retain, name) for name in stages} | {name: getattr(m, name) for name, m in modules.items()}

    def timed(fn, phase):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[phase] += time.perf_counter() - start
        return wrapper

    day = LATENCY_DAY.isoformat()
    for model in retain.champions(str(cfg.model_dir("risk")), str(cfg.model_dir("accept"))):
        model.booster_.set_params(n_jobs=1)  # as the service runs them
    retain.decide_one(cfg, customers[0], day)  # models loaded outside the timing
    try:
        for name, phase in stages.items():
            setattr(retain, name, timed(saved[name], phase))
        for name, module in modules.items():
            setattr(module, name, timed(saved[name], "messages"))
        start = time.perf_counter()
        for facts in customers[:n]:
            retain.decide_one(cfg, facts, day)
        spent["decide_one"] = time.perf_counter() - start
    finally:
        for name in stages:
            setattr(retain, name, saved[name])
        for name, module in modules.items():
            setattr(module, name, saved[name])
    return spent


def load(url: str, customers: list[dict], clients: int, seconds: float) -> dict[str, Any]:
    """`clients` threads posting one distinct customer after another until `seconds` have passed."""
    deadline, lock, results = time.monotonic() + seconds, threading.Lock(), []
    queue = iter(customers * 10)

    def client() -> None:
        with httpx.Client() as http:
            while time.monotonic() < deadline:
                with lock:
                    facts = next(queue)
                try:
                    status, took, _ = post(http, url, facts, LOAD_DAY)
                except httpx.HTTPError:
                    status, took = 0, 0.0
                with lock:
                    results.append((status, took))

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: client(), range(clients)))
    wall = time.perf_counter() - start
    ok = np.array([took for status, took in results if status == 200])
    return {"clients": clients, "seconds": wall, "requests": len(results),
            "errors": sum(status != 200 for status, _ in results), **_percentiles(ok),
            "requests_per_s": len(results) / wall}


def overspend(client, cfg: Config, day: dt.date, online_budget: float) -> dict[str, float]:
    """What the day reserved and logged against its budget; overspend is either beyond the budget."""
    reserved = budget.spent(client, cfg, day)
    logged = bq.query(client, cfg, f"SELECT COALESCE(SUM(offer_cost), 0) AS cost, COUNTIF(contact AND offer_cost > 0) "
                                   f"AS offers, COUNT(*) AS decisions FROM `{cfg.table('online_decisions')}` "
                                   "WHERE decision_date = @d", d=day).iloc[0]
    return {"budget": online_budget, "reserved": reserved, "logged_cost": float(logged["cost"]),
            "offers": int(logged["offers"]), "decisions": int(logged["decisions"]),
            "overspend": max(reserved - online_budget, float(logged["cost"]) - online_budget, 0.0)}


def _percentiles(seconds: np.ndarray) -> dict[str, float]:
    if not len(seconds):
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    p50, p95, p99 = np.percentile(seconds * 1000, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


def shares(lat: dict[str, Any], split: dict[str, float]) -> dict[str, float]:
    """Share of the client-measured time of a request in each part: the decision's stages scaled to the server's
    decide time, BigQuery from Server-Timing, the rest (validation, the shield's recheck, HTTP, JSON) as other."""
    server, client_s = lat["server_s"], lat["client_s"]
    parts = {k: server["decide"] * v / split["decide_one"] for k, v in split.items() if k != "decide_one"}
    parts["decision other (facts check, summary)"] = server["decide"] - sum(parts.values())
    parts["bigquery"] = server["bq"]
    parts["http, validation, logging"] = client_s - server["decide"] - server["bq"]
    return {k: v / client_s for k, v in parts.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=300, help="latency phase: sequential requests")
    p.add_argument("--clients", type=int, default=50, help="load phase: concurrent clients")
    p.add_argument("--seconds", type=float, default=30.0, help="load phase: duration")
    p.add_argument("--budget", type=float, default=5000.0, help="load phase: the online daily budget (it runs out)")
    args = p.parse_args(argv)
    cfg = load_config({"dataset": DATASET})
    client = bq.client(cfg)
    bq.ensure_tables(client, cfg)
    for day in (LATENCY_DAY, LOAD_DAY):
        reset(client, cfg, day)

    print(f"latency: {args.requests} sequential requests ...", flush=True)
    emu_pid = emulator.pid(emulator.for_config(cfg)) if cfg.bq_endpoint else None
    with serving(online_budget=1e12) as (url, server):
        lat = latency(url, server, emu_pid and psutil.Process(emu_pid), customer_facts(cfg, LATENCY_DAY),
                      args.requests)
    split = decide_split(cfg, customer_facts(cfg, LATENCY_DAY), min(args.requests, 100))
    print(f"load: {args.clients} clients for {args.seconds:.0f} s, online budget {args.budget:,.0f} ...", flush=True)
    with serving(online_budget=args.budget) as (url, _):
        loaded = load(url, customer_facts(cfg, LOAD_DAY), args.clients, args.seconds)
    money = overspend(client, cfg, LOAD_DAY, args.budget)

    record = {"latency": lat | {"target_p99_ms": TARGET_P99_MS}, "shares": shares(lat, split), "load": loaded,
              "budget": money}
    out = cfg.artifacts / "bench" / "serve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(report(record))
    print(f"\nwrote {out}")
    if loaded["errors"] or money["overspend"] > 1e-6:
        sys.exit("load test: errors or overspend")


def report(r: dict[str, Any]) -> str:
    lat, loaded, money = r["latency"], r["load"], r["budget"]
    lines = [f"{'POST /retain':<28}{'requests':>9}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>9}"]
    for name, x in (("1 client, sequential", lat), (f"{loaded['clients']} clients, {loaded['seconds']:.0f} s", loaded)):
        lines.append(f"{name:<28}{x['requests']:>9,}{x['errors']:>8}{x['p50_ms']:>9.1f}{x['p95_ms']:>9.1f}"
                     f"{x['p99_ms']:>9.1f}{x['requests_per_s']:>9.1f}")
    mark = "ok" if lat["p99_ms"] < TARGET_P99_MS else "MISS"
    lines.append(f"\np99 with one client {lat['p99_ms']:.1f} ms: {mark} (aim < {TARGET_P99_MS:.0f} ms)")
    lines.append(f"CPU per sequential request: server {lat['server_cpu_ms']:.1f} ms, BigQuery emulator "
                 f"{lat['emulator_cpu_ms']:.1f} ms (the latency on idle cores, about)")
    lines.append("share of a sequential request's time: " + ", ".join(f"{k} {v:.0%}" for k, v in r["shares"].items()))
    lines.append(f"load-test budget: {money['budget']:,.2f}, reserved {money['reserved']:,.2f}, logged "
                 f"{money['logged_cost']:,.2f} over {money['offers']} offers in {money['decisions']:,} decisions; "
                 f"overspend {money['overspend']:.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
