"""Messages per second of the LLM generate stage, and what the shield makes of them.

    .venv/bin/python -m bench.messages                      # 124 contacts (the demo's day), transformers on CPU
    .venv/bin/python -m bench.messages --contacts 300 --best-of-n 4

A day of `--contacts` contacted IBM Telco customers, a quarter of them with a discount (levels 1-3) and the rest
a check-in, as the demo's plan decides them, goes through the generate stage (`generate.generate`) with the
configured LLM backend and champions (RETENTION_ARTIFACT_ROOT), then through the shield stage. Prints one JSON line:
seconds, msg/s (contacts written a second), the share of messages the LLM wrote and the shield sent (not the
template), and the messages by generator after the shield.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time

import numpy as np

from retention.config import load_config
from retention.datasets.seed import customers_from_telco
from retention.datasets.telco import read_telco
from retention.messages import generate, shield
from retention.rlhf.data import reason_codes

DS = "2026-06-01"


def contacts(data_dir: str, n: int, offer_pcts: tuple[float, ...], seed: int = 0):
    """n contacted customers with the columns the generate stage reads (offer, expected value, reason codes)."""
    rng = np.random.default_rng(seed)
    day = customers_from_telco(read_telco(data_dir), dt.date.fromisoformat(DS)).sample(n, random_state=seed)
    level = np.where(rng.random(n) < 0.25, rng.integers(1, len(offer_pcts), n), 0)
    return day.reset_index(drop=True).assign(
        contact=True, offer_level=level, offer_pct=np.asarray(offer_pcts)[level],
        expected_value=rng.gamma(2.0, 20.0, n), reason_codes=reason_codes(day, rng))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.messages", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contacts", type=int, default=124, help="contacted customers in the day")
    p.add_argument("--generator", default="transformers", choices=["transformers", "vllm", "template"])
    p.add_argument("--best-of-n", type=int, default=None, help="candidates per contact (default: the config's)")
    p.add_argument("--llm-max-messages", type=int, default=0, help="LLM cap (0: every contact)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    overrides = {"generator": args.generator, "best_of_n": args.best_of_n}
    cfg = load_config({k: v for k, v in overrides.items() if v is not None})
    plan = contacts(cfg.data_dir, args.contacts, cfg.offer_pcts)
    if args.generator != "template":
        from retention.messages import llm

        llm.load_backend(cfg)  # the model loads once per process: not part of a day's messages/s
    start = time.perf_counter()
    written = generate.generate(plan, cfg, DS, args.llm_max_messages)
    seconds = time.perf_counter() - start
    final = shield.shield(written, cfg, DS)
    sent_by_llm = final["generator"].isin(["template", "template_fallback"]).__invert__()
    record = {"contacts": args.contacts, "generator": args.generator, "best_of_n": cfg.best_of_n,
              "seconds": round(seconds, 1), "msg_per_s": round(args.contacts / seconds, 3),
              "llm_share": round(float(sent_by_llm.mean()), 3), "by_generator": final["generator"].value_counts().to_dict(),
              "model": written["message_model"].iloc[0]}
    print(json.dumps(record), flush=True)
    return record


if __name__ == "__main__":
    main()
