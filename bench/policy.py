"""The decide stage with a trained policy: rows/s of the whole decide without the forward pass, and the policy
forward against a bare torch MLP of the same shape on the same batch.

    python -m bench.policy                                  # 100k and 1M customers, budgets 5,000 and 2,000,000
    python -m bench.policy --rows 1000000 --budgets 5000 --repeat 7

The policy is the champion when one is saved, else a freshly initialised network of the same shape (its forward
costs the same; whom it contacts differs). The day is synthetic: random scores, a history mix that sends rows into
every hard rule, ids as the seed generator writes them.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import time

import numpy as np
import pandas as pd
import torch

from bench.ratios import _ratio, best_of
from retention.deciding.decide import decide_plan
from retention.config import CHANNELS, Config, load_config
from retention.deciding import rules
from retention.deciding.sampler import DELAYS, OBS
from retention.deciding.policy import BLOCK, Policy, agent_policy, load_policy
from retention.deciding.network import Agent

DS = dt.date(2026, 6, 1)
TARGET_ROWS_PER_S = 1_000_000
"""decide as a whole, excluding the forward pass (issue 9)."""
TARGET_FORWARD_RATIO = 0.5
"""bare MLP time over the policy forward's time (issue 9; 1.0 is as fast as the bare MLP)."""


def decide_throughput(cfg: Config, day: pd.DataFrame, policy: Policy, ds: dt.date = DS, repeat: int = 5) -> dict:
    """rows/s of decide.decide on `day` with `policy`, the forward pass excluded; best of `repeat` runs.

    Every call of policy.logits is timed and its seconds are subtracted from the run's: the decisions are the
    policy's own (a stand-in with free logits would contact different rows and spend the budget differently).
    """
    forward = [0.0]

    def timed_logits(obs: np.ndarray):
        start = time.perf_counter()
        out = policy.logits(obs)
        forward[0] += time.perf_counter() - start
        return out

    timed = dataclasses.replace(policy, logits=timed_logits)
    best_total, best_forward, contacts = np.inf, 0.0, 0
    for _ in range(repeat):
        forward[0] = 0.0
        start = time.perf_counter()
        planned = decide_plan(day, cfg, timed, ds)
        total = time.perf_counter() - start
        if total - forward[0] < best_total - best_forward:
            best_total, best_forward, contacts = total, forward[0], int(planned["contact"].sum())
    record = _ratio("decide_excl_forward", "", len(day), best_total - best_forward, None,
                    target_rows_per_s=TARGET_ROWS_PER_S)
    return record | {"forward_seconds": round(best_forward, 4), "budget": cfg.daily_budget, "contacts": contacts}


def bare_mlp(hidden: int) -> torch.nn.Sequential:
    """The policy network's shape as a plain MLP: state -> hidden -> hidden -> all 2 + 4 + 8 logits."""
    return torch.nn.Sequential(torch.nn.Linear(len(OBS), hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, hidden),
                               torch.nn.Tanh(), torch.nn.Linear(hidden, 2 + rules.LEVELS + DELAYS)).eval()


def rule_throughput(cfg: Config, day: pd.DataFrame, rule, ds: dt.date = DS, repeat: int = 5) -> dict:
    """rows/s of the rule champion's decide (greedy EV with its follow-up: no network) on `day`; best of `repeat`."""
    best, contacts = np.inf, 0
    for _ in range(repeat):
        start = time.perf_counter()
        planned = decide_plan(day, cfg, rule, ds)
        if (seconds := time.perf_counter() - start) < best:
            best, contacts = seconds, int(planned["contact"].sum())
    record = _ratio("decide_rule_champion", "", len(day), best, None, target_rows_per_s=TARGET_ROWS_PER_S)
    return record | {"budget": cfg.daily_budget, "contacts": contacts}


def forward_ratio(n: int, hidden: int = 128, repeat: int = 7) -> dict:
    """The policy's logits vs a bare torch MLP of the same shape on the same n states, BLOCK rows per call as decide
    feeds them; best of `repeat`.

    The limit is the bare MLP on one thread, the setting the policy's forward runs on (agent_policy pins it: inside
    decide a second torch thread made the forward 20 to 50 times slower on this 2-core machine). The bare MLP on
    torch's own thread setting, back to back, is reported beside it.
    """
    obs = np.random.default_rng(0).random((n, len(OBS)), dtype=np.float32)
    x = torch.from_numpy(obs)
    logits = agent_policy(Agent(hidden), "bench").logits
    mlp = bare_mlp(hidden)

    def ours() -> None:
        for s in range(0, n, BLOCK):
            logits(obs[s:s + BLOCK])

    def bare() -> None:
        with torch.inference_mode():
            for s in range(0, n, BLOCK):
                mlp(x[s:s + BLOCK])

    threads = torch.get_num_threads()
    bare_default = best_of(bare, repeat)
    torch.set_num_threads(1)
    try:
        bare_one = best_of(bare, repeat)
    finally:
        torch.set_num_threads(threads)
    record = _ratio("policy_forward", "bare torch MLP, 1 thread", n, best_of(ours, repeat), bare_one,
                    target=TARGET_FORWARD_RATIO)
    return record | {"torch_threads": threads, "bare_default_threads_seconds": round(bare_default, 4),
                     "ratio_vs_default_threads": round(bare_default / record["seconds"], 3)}


def synthetic_day(n: int, seed: int = 0) -> pd.DataFrame:
    """n scored customers as decide receives them: random scores, a history mix that reaches every hard rule."""
    rng = np.random.default_rng(seed)
    accept = np.sort(rng.uniform(0, 0.6, (n, rules.LEVELS)), axis=1)  # richer offers are accepted more often
    ids = np.strings.add("SYN-", np.strings.zfill(np.arange(1, n + 1).astype(np.dtypes.StringDType()), 7))
    return pd.DataFrame({
        "customer_id": pd.Series(ids, dtype="str"),
        "customer_value": (12 * rng.uniform(18, 120, n)).round(2),
        "churn_risk": rng.uniform(0, 0.9, n),
        **{f"accept_prob_{k}": accept[:, k] for k in range(rules.LEVELS)},
        "suppressed": rng.random(n) < 0.03,
        "days_since_contact": rng.choice([1, 3, 6, 7, 8, 30, 999, 999, 999, 999], n),
        "contacts_in_window": rng.choice([0, 0, 0, 1, 2, 3, 4], n),
        "channel": pd.Categorical.from_codes(rng.integers(0, len(CHANNELS), n), CHANNELS).astype("str"),
    })


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.policy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="100000,1000000", help="comma-separated customer counts")
    p.add_argument("--budgets", default="5000,2000000", help="comma-separated daily budgets")
    p.add_argument("--repeat", type=int, default=5, help="runs per measurement (the fastest counts)")
    args = p.parse_args(argv)
    cfg = load_config({})
    policy = load_policy(cfg.model_dir("policy"))
    if policy is None:
        torch.manual_seed(0)
        policy = agent_policy(Agent(), "untrained")
    print(f"policy {policy.version}, torch threads {torch.get_num_threads()}")
    for n in (int(r) for r in args.rows.split(",")):
        day = synthetic_day(n)
        for budget in (float(b) for b in args.budgets.split(",")):
            r = decide_throughput(dataclasses.replace(cfg, daily_budget=budget), day, policy, repeat=args.repeat)
            print(f"decide   {n:>9,} rows  budget {budget:>11,.0f}  {r['rows_per_s']:>12,.0f} rows/s excl. forward "
                  f"({r['seconds']:.3f} s + forward {r['forward_seconds']:.3f} s, {r['contacts']:,} contacts)  "
                  f"{'ok' if r['meets_target'] else 'MISS'} {r['target']}")
        r = forward_ratio(n, repeat=args.repeat)
        print(f"forward  {n:>9,} rows  ours {r['seconds']:.3f} s  bare MLP 1 thread {r['seconds'] * r['ratio']:.3f} s  "
              f"ratio {r['ratio']:.2f}  {'ok' if r['meets_target'] else 'MISS'} {r['target']}  (bare MLP on "
              f"{r['torch_threads']} threads {r['bare_default_threads_seconds']:.3f} s, "
              f"ratio {r['ratio_vs_default_threads']:.2f})")


if __name__ == "__main__":
    main()
