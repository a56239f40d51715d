"""`make bench`: the daily plan at 10k, 100k and 1M synthetic customers, and each hot path against its local limit.

    python -m bench                              # all scales, ratios at 100k
    python -m bench --scales 10000,100000 --ratio-rows 100000 --decide-rows 100000
    python -m bench --serve                      # then POST /retain latency and load (bench.serve, its defaults)
    python -m bench --ten-million                # 100k, 1M and 10M (about 25 minutes on 2 cores), decide at 10M

Each scale runs in its own process (`bench.scale`) so its peak memory is its own. Prints a table and
writes the same records to <artifact root>/bench/latest.json, plus a log-log plot of seconds per stage
against customers with the fitted slope of each stage (cost growth: 1.0 is linear) and, where two scales of at
least 1M ran, the slope from 1M up (target <= 1.05). Scales below the largest run their day twice (`--repeat`)
and keep each stage's fastest time: a slope from them to the largest scale's one run errs high, never low. Peak
RSS is the bench process's (every stage runs in it) and, separately, the embedded emulator's process tree.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys

import numpy as np

from bench import policy as bench_policy
from bench import ratios
from bench import serve as bench_serve
from retention.config import REPO_ROOT, load_config
from retention.deciding.greedy import GreedyRule
from retention.deciding.policy import Policy, agent_policy, load_network, load_policy
from retention.deciding.network import Agent

TARGETS = {1_000_000: {"shield_schedule_bulk": [("rows_per_s", 200_000)],
                       "end_to_end": [("seconds", 600), ("peak_rss_mb", 4096)]},
           10_000_000: {"shield_schedule_bulk": [("rows_per_s", 200_000)],
                        "end_to_end": [("seconds", 1200), ("peak_rss_mb", 8192)]}}
"""Targets by scale: shield + schedule >= 200k messages/s (on the day's messages repeated to 100k in one call);
1M under 10 minutes and 4 GiB, 10M under 20 minutes and 8 GiB (the project's processes; the emulator stands in for
BigQuery and is reported apart)."""
SLOPE_FROM, MAX_SLOPE = 1_000_000, 1.05
"""Cost growth from 1M customers up: every stage's fitted log-log slope at most 1.05."""
TEN_MILLION = {"scales": "100000,1000000,10000000", "decide_rows": 10_000_000}


def run_scales(scales: list[int], ds: str, shards: int, profile: str, repeat: int = 2) -> list[dict]:
    """Each scale in its own process; the ones below the largest run their day `repeat` times and keep each stage's
    fastest time, so a disturbed run at a small scale cannot flatter the slopes up to the largest one (one run)."""
    records = []
    for n in scales:
        print(f"scale {n:,} ...", flush=True)
        extra = ["--shards", str(shards), "--profile", profile] if n == max(scales) else ["--repeat", str(repeat)]
        out = subprocess.run([sys.executable, "-m", "bench.scale", str(n), "--ds", ds, *extra], cwd=REPO_ROOT,
                             capture_output=True, text=True)
        done = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode:
            print(table(done), flush=True)  # what was measured before it failed
            raise RuntimeError(f"bench.scale {n} failed:\n{out.stderr[-3000:]}")
        records += done
    return records


def run_ratios(cfg, rows: int, ds: str, decide_rows: int) -> list[dict]:
    day = ratios.day_frame(cfg, rows, dt.date.fromisoformat(ds))
    out = ratios.score_vs_raw(cfg, day, dt.date.fromisoformat(ds))
    out.append(ratios.budget_vs_argsort(1_000_000))
    out += decide_ratios(cfg, decide_rows)
    out += ratios.bq_vs_parquet(cfg, day)
    return out


def decide_ratios(cfg, n: int) -> list[dict]:
    """The whole decide without the forward (>= 1M rows/s) and the policy forward vs a bare MLP, at n customers.

    The rollout is the PPO network's: the champion's, or the one trained beside a rule champion (its folder keeps
    it), else an untrained network of the same shape. With a rule champion its own decide (what the daily plan
    runs, no network) is measured too."""
    champion = load_policy(cfg.model_dir("policy"))
    network = champion if isinstance(champion, Policy) else load_network(cfg.model_dir("policy"))
    if network is None:
        print("no trained policy network: decide measured with an untrained network of the same shape", flush=True)
        network = agent_policy(Agent(), "untrained")
    day = bench_policy.synthetic_day(n)
    out = [bench_policy.decide_throughput(cfg, day, network, repeat=3)]
    if isinstance(champion, GreedyRule):
        out.append(bench_policy.rule_throughput(cfg, day, champion, repeat=3))
    return out + [bench_policy.forward_ratio(n, repeat=3)]


def slopes(records: list[dict]) -> dict[str, float]:
    """Least-squares slope of log(seconds) on log(customers) per stage."""
    by_stage: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        by_stage.setdefault(r["stage"], []).append((r["scale"], r["seconds"]))
    return {stage: round(float(np.polyfit(np.log([p[0] for p in pts]), np.log([max(p[1], 1e-4) for p in pts]), 1)[0]), 3)
            for stage, pts in by_stage.items() if len({p[0] for p in pts}) > 1}


def plot(records: list[dict], fitted: dict[str, float], path, upper: dict[str, float] | None = None) -> None:
    """Seconds per stage against customers, log-log; each legend entry gives the stage's fitted slope over every
    scale and, with `upper`, its slope from SLOPE_FROM up (the target's)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 5))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # a colour per stage (the default cycle repeats after ten)
    for stage, slope in fitted.items():
        pts = sorted((r["scale"], r["seconds"]) for r in records if r["stage"] == stage)
        label = f"{stage} (slope {slope:.2f}" + (f"; {SLOPE_FROM / 1e6:g}M up {upper[stage]:.2f}"
                                                 if upper and stage in upper else "") + ")"
        ax.loglog(*zip(*pts), marker="o", label=label)
    ax.set_xlabel("customers")
    ax.set_ylabel("seconds")
    ax.set_title(f"Daily plan: time per stage (target: slope <= {MAX_SLOPE} from {SLOPE_FROM / 1e6:g}M up)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_targets(records: list[dict]) -> None:
    for r in records:
        marks = [(f"{key} {'>=' if key == 'rows_per_s' else '<='} {bound:,}",
                  r[key] >= bound if key == "rows_per_s" else r[key] <= bound)
                 for key, bound in TARGETS.get(r["scale"], {}).get(r["stage"], [])]
        if marks:
            r["target"] = ", ".join(m[0] for m in marks)
            r["meets_target"] = all(m[1] for m in marks)


def table(records: list[dict]) -> str:
    head = f"{'stage':<22}{'rows':>11}{'seconds':>10}{'rows/s':>14}{'peak MiB':>10}{'emu MiB':>9}{'ratio':>8}  target"
    lines = [head, "-" * len(head)]
    for r in records:
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        mark = "" if "meets_target" not in r else ("ok  " if r["meets_target"] else "MISS ") + r["target"]
        limit = f"  vs {r['limit']}" if r.get("limit") else ""
        lines.append(f"{r['stage']:<22}{r['rows']:>11,}{r['seconds']:>10.3f}{r['rows_per_s'] or 0:>14,.0f}"
                     f"{r.get('peak_rss_mb', 0):>10.0f}{r.get('emulator_peak_rss_mb', 0):>9.0f}{ratio:>8}  {mark}{limit}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scales", default="10000,100000,1000000", help="comma-separated customer counts")
    p.add_argument("--ratio-rows", type=int, default=100_000, help="rows for the score and BigQuery ratios")
    p.add_argument("--decide-rows", type=int, default=1_000_000, help="rows for the decide and policy forward ratios")
    p.add_argument("--ds", default="2026-06-01")
    p.add_argument("--shards", type=int, default=4, help="at the largest scale, also score in this many shards")
    p.add_argument("--profile", default="", help="stages to profile with pyinstrument at the largest scale "
                                                 "(their times then include the profiler's overhead)")
    p.add_argument("--ten-million", action="store_true",
                   help=f"scales {TEN_MILLION['scales']} and decide at 10M rows (long: about 25 minutes on 2 cores)")
    p.add_argument("--serve", action="store_true", help="then the online service's latency and load test "
                                                        "(`python -m bench.serve` with its defaults)")
    p.add_argument("--repeat", type=int, default=2, help="runs of the day at each scale below the largest (each "
                                                         "stage's fastest kept); the largest runs once")
    args = p.parse_args(argv)
    if args.ten_million:
        args.scales, args.decide_rows = TEN_MILLION["scales"], TEN_MILLION["decide_rows"]
    cfg = load_config({"dataset": "bench"})
    records = run_scales([int(s) for s in args.scales.split(",")], args.ds, args.shards, args.profile, args.repeat)
    check_targets(records)
    fitted = slopes(records)
    upper = slopes([r for r in records if r["scale"] >= SLOPE_FROM])
    ratio_records = run_ratios(cfg, args.ratio_rows, args.ds, args.decide_rows)
    out_dir = cfg.artifacts / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(records, fitted, out_dir / "scaling.png", upper)
    (out_dir / "latest.json").write_text(json.dumps(
        {"stages": records, "ratios": ratio_records, "slopes": fitted, "slopes_from_1m": upper}, indent=1))
    print(table(records))
    print("\nRatios to the local limit (limit time / our time; 1.0 = as fast as the limit)")
    print(table(ratio_records))
    print("\nCost growth, fitted log-log slope per stage: " + ", ".join(f"{k} {v}" for k, v in fitted.items()))
    if upper:
        steep = {k: v for k, v in upper.items() if v > MAX_SLOPE}
        print(f"From {SLOPE_FROM:,} customers up (target <= {MAX_SLOPE}): "
              + ", ".join(f"{k} {v}" for k, v in upper.items())
              + (f"; MISS: {', '.join(steep)}" if steep else "; every stage ok"))
    print(f"\nwrote {out_dir / 'latest.json'} and {out_dir / 'scaling.png'}")
    if args.serve:
        print("\nPOST /retain (bench.serve)", flush=True)
        bench_serve.main([])


if __name__ == "__main__":
    main()
