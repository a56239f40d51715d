"""The decide and forward benchmarks: records shaped like bench.ratios', on a tiny day."""
import dataclasses

import torch

from bench.policy import bare_mlp, decide_throughput, forward_ratio, synthetic_day
from retention.config import Config
from retention.deciding.policy import agent_policy
from retention.deciding.network import Agent


def test_decide_throughput_excludes_the_forward():
    torch.manual_seed(0)
    policy = agent_policy(Agent(hidden=16), "v1", block=64)
    calls = []

    def counted(obs):
        calls.append(len(obs))
        return policy.logits(obs)

    counting = dataclasses.replace(policy, logits=counted)
    record = decide_throughput(Config(daily_budget=500.0), synthetic_day(1000), counting, repeat=2)
    assert record["stage"] == "decide_excl_forward" and record["rows"] == 1000
    assert record["rows_per_s"] > 0 and 0 < record["forward_seconds"] and record["target"] == ">= 1,000,000 rows/s"
    assert isinstance(record["meets_target"], bool) and record["budget"] == 500.0 and record["contacts"] > 0
    assert max(calls) == 64  # the policy is fed blocks, as in the daily plan


def test_forward_ratio_against_the_bare_mlp():
    record = forward_ratio(2048, hidden=16, repeat=2)
    assert record["stage"] == "policy_forward" and record["rows"] == 2048 and record["ratio"] > 0
    assert record["target"] == "ratio >= 0.5" and record["bare_default_threads_seconds"] > 0
    # the same shape: the policy network is the bare MLP with its last layer split in three heads, plus the critic
    critic = 16 + 1
    assert sum(p.numel() for p in bare_mlp(16).parameters()) == sum(p.numel() for p in Agent(16).parameters()) - critic


def test_a_repeated_stage_keeps_its_fastest_time_and_its_highest_peak():
    from bench.scale import fastest

    runs = [{"stage": "decide", "seconds": 3.0, "peak_rss_mb": 900.0, "emulator_peak_rss_mb": 10.0},
            {"stage": "decide", "seconds": 2.5, "peak_rss_mb": 800.0, "emulator_peak_rss_mb": 30.0}]
    assert fastest(runs) == {"stage": "decide", "seconds": 2.5, "seconds_each": [3.0, 2.5], "peak_rss_mb": 900.0,
                             "emulator_peak_rss_mb": 30.0}
    assert fastest(runs[:1]) == runs[0]


def test_slopes_from_the_records_and_the_plot_that_shows_both(tmp_path):
    from bench.__main__ import plot, slopes

    records = [{"stage": "linear", "scale": n, "seconds": n / 1e5} for n in (100_000, 1_000_000, 10_000_000)]
    records += [{"stage": "square", "scale": n, "seconds": (n / 1e6) ** 2} for n in (1_000_000, 10_000_000)]
    records += [{"stage": "one_scale", "scale": 1_000_000, "seconds": 1.0}]
    fitted = slopes(records)
    assert fitted == {"linear": 1.0, "square": 2.0}
    upper = slopes([r for r in records if r["scale"] >= 1_000_000])
    plot(records, fitted, tmp_path / "scaling.png", upper)
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
