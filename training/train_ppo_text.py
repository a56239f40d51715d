"""PPO on text: tune the SFT message model against the reward model and the shield, then gate it against SFT.

Usage:
    .venv/bin/python -m training.train_ppo_text --profile quick
    .venv/bin/python -m training.train_ppo_text --profile full --sft-dir PATH --reward-dir PATH --judge-dir PATH --no-promote

Reads the SFT, reward-model and judge champions unless --sft-dir / --reward-dir / --judge-dir name versions. The
policy is a LoRA adapter initialised from SFT's and trained by retention/rlhf/ppo_text.py on the training split of
the retention prompts. The gate (retention/rlhf/evaluate.py) compares PPO with SFT on held-out retention prompts:
win rate > 50 % by the independent judge (a reward model PPO never trained against, plus the grounding check),
mean KL to SFT <= the target, shield pass rate >= SFT's; the trained-against reward model's win rate and the two
judges' agreement are reported. The version directory holds the adapter and tokenizer, metrics.json (the gate's
figures at the top level, the per-step log), learning_curve.png and samples.md (20 held-out prompts, SFT and PPO
side by side with both judges' scores and the shield verdict).
"""
from __future__ import annotations

import os

# OpenMP threads that sleep at barriers instead of spinning. On a shared (oversubscribed) CPU a spinning thread waits
# for a preempted peer at every op: one SmolLM2-135M forward of 4 x 250 tokens took ~28 s instead of ~1.4 s here.
# libgomp reads this when torch loads it, so it is set before anything imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import torch

from retention.infra.artifacts import METRICS, champion_dir, new_version, promote_if_passed, read_metrics, version_dir
from retention.config import Config, load_config
from retention.rlhf import data
from retention.rlhf.evaluate import compare, gate, gate_table, samples_markdown, summarise
from retention.rlhf.ppo_text import PPOConfig, learning_curve, train
from retention.rlhf.reward import load_reward
from retention.rlhf.sft import POLICY, REFERENCE, load_policy, save_adapter

NAME = "ppo_text"
PROFILES = {
    "tiny": (PPOConfig(steps=2, batch_size=2, minibatch_size=1, update_epochs=1, max_new_tokens=8, kl_horizon=16), 4),
    # quick: 12 x 8 messages; the horizon is short so that beta visibly tracks the target within the run. With a
    # shield penalty of 1 (one reward-model std) 10 steps let the messages grow past the shield's 200 characters.
    "quick": (PPOConfig(steps=12, batch_size=8, minibatch_size=4, update_epochs=2, learning_rate=1e-4,
                        max_new_tokens=64, kl_target=6.0, kl_horizon=64, shield_penalty=2.0), 32),
    "full": (PPOConfig(steps=300, batch_size=16, minibatch_size=8, update_epochs=4, learning_rate=5e-5,
                       max_new_tokens=64, kl_target=6.0, kl_horizon=2000), 200),
}
"""(PPO hyper-parameters, held-out prompts for the gate) per profile."""

log = logging.getLogger("train_ppo_text")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cfg = load_config()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact-root", default=cfg.artifact_root,
                   help="adapter goes to <root>/models/ppo_text/<version>/")
    p.add_argument("--data-dir", default=cfg.data_dir, help="folder holding IBM Telco (for the retention prompts)")
    p.add_argument("--base-model", default=cfg.base_model, help="path or hub id; empty: SmolLM2-135M-Instruct")
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick", help="training budget")
    p.add_argument("--seed", type=int, default=42, help="data split, prompt order and sampling seed")
    p.add_argument("--no-promote", action="store_true", help="only report: never touch the champion, exit 0")
    p.add_argument("--sft-dir", default="", help="SFT adapter directory; empty: the SFT champion")
    p.add_argument("--reward-dir", default="", help="reward model directory; empty: the reward champion")
    p.add_argument("--judge-dir", default="", help="independent judge (a reward model); empty: the judge champion")
    p.add_argument("--kl-target", type=float, default=None, help="override the profile's KL target (nats/message)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cfg, eval_prompts = PROFILES[args.profile]
    cfg = dataclasses.replace(cfg, seed=args.seed, kl_target=args.kl_target or cfg.kl_target)

    # models: one base with the policy (trainable) and reference (frozen) adapters, both from SFT; the reward model
    # PPO climbs, and the judge it never sees
    root = Config(artifact_root=args.artifact_root).artifacts
    sft_dir = Path(args.sft_dir) if args.sft_dir else champion_dir(root, "sft")
    reward_dir = Path(args.reward_dir) if args.reward_dir else champion_dir(root, "reward")
    model, tokenizer = load_policy(sft_dir, root, args.base_model, is_trainable=True)
    model.load_adapter(str(sft_dir), adapter_name=REFERENCE, is_trainable=False)
    model.set_adapter(POLICY)
    reward_model, reward_tokenizer = load_reward(reward_dir, root, args.base_model)
    judge_dir = Path(args.judge_dir) if args.judge_dir else champion_dir(root, "judge")
    judge_model, judge_tokenizer = load_reward(judge_dir, root, args.base_model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for m in (model, reward_model, judge_model):
        m.to(device)

    # prompts
    folder = data.ensure(root, args.data_dir, args.seed, data.PROFILE_CUSTOMERS[args.profile])
    train_prompts = data.load(folder, "prompts", "train")
    test_prompts = data.load(folder, "prompts", "test")[:eval_prompts]
    log.info("PPO-text: %d training prompts, %d held-out prompts; SFT %s, reward model %s",
             len(train_prompts), len(test_prompts), sft_dir, reward_dir)

    # training
    train_started = time.perf_counter()
    _, history = train(cfg, model, tokenizer, reward_model, reward_tokenizer, train_prompts)
    train_seconds = time.perf_counter() - train_started

    # save the policy adapter, then gate it against SFT on held-out prompts
    version = new_version()
    out = version_dir(root, NAME, version)
    save_adapter(model, tokenizer, out, args.base_model)
    learning_curve(history, cfg.kl_target, out / "learning_curve.png")
    rows = compare(model, tokenizer, reward_model, reward_tokenizer, judge_model, judge_tokenizer, test_prompts, cfg)
    figures = summarise(rows, cfg.kl_target)
    verdict = gate(figures)
    (out / "samples.md").write_text(samples_markdown(rows, 20))
    table = gate_table(figures, verdict)
    print(table, flush=True)

    metrics = {**figures, "model": NAME, "version": version, "profile": args.profile, "seed": args.seed,
               "base_model": args.base_model or "smollm2-135m-instruct",
               "sft_version": read_metrics(sft_dir)["version"], "reward_version": read_metrics(reward_dir)["version"],
               "judge_version": read_metrics(judge_dir)["version"],
               "gate": verdict, "gate_table": table, "config": dataclasses.asdict(cfg), "history": history,
               "train_seconds": round(train_seconds, 1), "seconds": round(time.perf_counter() - started, 1)}
    (out / METRICS).write_text(json.dumps(metrics, indent=2))  # last: marks a finished run
    log.info("wrote %s (%.1f s)", out, metrics["seconds"])
    summary = (f"win rate {figures['win_rate']:.3f} by the judge ({figures['rm_win_rate']:.3f} by the trained RM, "
               f"agreement {figures['agreement']:.3f}), KL {figures['kl']:.2f} (target {cfg.kl_target}), "
               f"shield {figures['shield_pass_rate']:.3f} vs SFT {figures['sft_shield_pass_rate']:.3f}")
    return promote_if_passed(root, NAME, version, verdict["passed"], summary, args.no_promote)


if __name__ == "__main__":
    sys.exit(main())
