"""Supervised fine-tuning of the message model: LoRA (r=16, alpha=32) on the base with TRL's SFTTrainer.

Usage:
    .venv/bin/python -m training.train_sft --profile quick
    .venv/bin/python -m training.train_sft --profile full --base-model <path or hub id> --load-in-8bit

The mix: good retention messages (retention/rlhf/retention_messages.jsonl, filled for customers built with the
generator's prompt builder) and OASST1 prompter -> assistant pairs, in the profile's proportion; loss on the
completion only. Gate: the held-out loss (retention + OASST1 validation rows) fell. The version directory holds the
LoRA adapter and tokenizer (the base is resolved at load time), metrics.json and loss.png.
"""
from __future__ import annotations

import os

# OpenMP threads that sleep at barriers instead of spinning. On a shared (oversubscribed) CPU a spinning thread waits
# for a preempted peer at every op: one SmolLM2-135M forward of 4 x 250 tokens took ~28 s instead of ~1.4 s here.
# libgomp reads this when torch loads it, so it is set before anything imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
import torch
from transformers import AutoTokenizer

from retention.infra.artifacts import METRICS, new_version, promote_if_passed, version_dir
from retention.config import Config, load_config
from retention.rlhf import data
from retention.messages.base_model import base_model_path
from retention.rlhf.sft import SFTParams, fits, logged_losses, loss_plot, mix, save_adapter, train_sft

NAME = "sft"
PROFILES = {
    # quick: 160 sequences of <= 320 tokens (a retention prompt is ~230 tokens in the chat template)
    "tiny": SFTParams(steps=2, batch_size=2, learning_rate=2e-4, max_length=512, retention_share=0.5, eval_size=2),
    "quick": SFTParams(steps=40, batch_size=4, learning_rate=3e-4, max_length=320, retention_share=0.75,
                       eval_size=8),
    "full": SFTParams(steps=1500, batch_size=8, learning_rate=1e-4, max_length=1024, retention_share=0.5,
                      eval_size=200),
}
"""Budget per profile: quick is what the retrain DAG runs on CPU, tiny is for smoke tests."""

log = logging.getLogger("train_sft")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cfg = load_config()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact-root", default=cfg.artifact_root, help="adapter goes to <root>/models/sft/<version>/")
    p.add_argument("--data-dir", default=cfg.data_dir, help="folder holding OASST1, HH-RLHF and IBM Telco")
    p.add_argument("--base-model", default=cfg.base_model, help="path or hub id; empty: SmolLM2-135M-Instruct")
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick", help="training budget")
    p.add_argument("--seed", type=int, default=42, help="data split, mix and training seed")
    p.add_argument("--no-promote", action="store_true", help="only report: never touch the champion, exit 0")
    p.add_argument("--load-in-8bit", action="store_true", help="8-bit base through bitsandbytes (GPU only)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    params = PROFILES[args.profile]
    if args.load_in_8bit:
        params = SFTParams(**(asdict(params) | {"load_in_8bit": True}))

    # model & tokenizer
    root = Config(artifact_root=args.artifact_root).artifacts
    base = base_model_path(root, args.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)

    # dataset
    folder = data.ensure(root, args.data_dir, args.seed, data.PROFILE_CUSTOMERS[args.profile])
    chat = [r for r in data.load(folder, "sft", "train", ("oasst",)) if fits(r, tokenizer, params.max_length)]
    retention = data.load(folder, "sft", "train", ("retention",))
    train_rows = mix(retention, chat, params.steps * params.batch_size, params.retention_share, args.seed)
    eval_rows = (data.load(folder, "sft", "validation", ("retention",))[:params.eval_size]
                 + [r for r in data.load(folder, "sft", "validation", ("oasst",))
                    if fits(r, tokenizer, params.max_length)][:params.eval_size])
    log.info("SFT mix: %d rows (%d retention candidates, %d OASST1 pairs within %d tokens); %d held-out rows",
             len(train_rows), len(retention), len(chat), params.max_length, len(eval_rows))

    # training
    trainer, held_out = train_sft(base, train_rows, eval_rows, params, args.seed)
    losses = logged_losses(trainer)
    log.info("held-out loss %.4f -> %.4f; last training loss %.4f",
             held_out["eval_loss_before"], held_out["eval_loss_after"], losses[-1]["loss"])

    # save
    version = new_version()
    out = version_dir(root, NAME, version)
    save_adapter(trainer.model, tokenizer, out, args.base_model)
    loss_plot(losses, out / "loss.png", "SFT (LoRA) training loss")
    passed = held_out["eval_loss_after"] < held_out["eval_loss_before"]
    metrics = {"model": NAME, "version": version, "profile": args.profile, "seed": args.seed,
               "base_model": args.base_model or "smollm2-135m-instruct", "params": asdict(params),
               "rows": {"train": len(train_rows), "retention": sum(r["source"] == "retention" for r in train_rows),
                        "held_out": len(eval_rows)},
               "train_loss": losses[-1]["loss"], "losses": losses, **held_out,
               "gate": {"rule": "eval_loss_after < eval_loss_before", "passed": passed},
               "seconds": round(time.perf_counter() - started, 1)}
    (out / METRICS).write_text(json.dumps(metrics, indent=2))  # last: marks a finished run
    log.info("wrote %s (%.1f s)", out, metrics["seconds"])
    summary = f"held-out loss {held_out['eval_loss_before']:.4f} -> {held_out['eval_loss_after']:.4f}"
    return promote_if_passed(root, NAME, version, passed, summary, args.no_promote)


if __name__ == "__main__":
    sys.exit(main())
