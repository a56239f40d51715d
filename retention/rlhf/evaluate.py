"""The PPO-text gate: PPO against SFT on held-out retention prompts, judged by the reward model.

For each prompt the SFT adapter and the PPO adapter each sample a message (with the same random numbers, so two
identical policies tie). The gate passes when PPO wins more than half of the reward-model comparisons (ties count
half), its mean KL to SFT (nats per message, on its own samples) is within the target, and its shield pass rate is
at least SFT's.
"""
from __future__ import annotations

import numpy as np
import torch

from retention.rlhf.ppo_text import PPOConfig, shield_pass, token_logprobs, use_adapter
from retention.rlhf.reward import score
from retention.rlhf.sft import REFERENCE, sample

GATE_KEYS = ("win_rate", "kl", "kl_target", "shield_pass_rate", "sft_shield_pass_rate", "mean_length")
"""The gate's figures, top-level keys of the PPO-text metrics.json."""


@torch.no_grad()
def compare(model, tokenizer, reward_model, reward_tokenizer, prompts: list[dict], cfg: PPOConfig) -> list[dict]:
    """One row per prompt: both messages, their reward-model scores and shield verdicts, and PPO's KL to SFT."""
    rows = []
    for i in range(0, len(prompts), cfg.batch_size):
        batch = prompts[i:i + cfg.batch_size]
        texts = [p["prompt"] for p in batch]
        torch.manual_seed(cfg.seed + i)
        with use_adapter(model, REFERENCE):
            sft = sample(model, tokenizer, texts, cfg.max_new_tokens, cfg.temperature, cfg.bf16_sampling)
        torch.manual_seed(cfg.seed + i)  # common random numbers: equal policies draw equal messages
        ppo = sample(model, tokenizer, texts, cfg.max_new_tokens, cfg.temperature, cfg.bf16_sampling)
        logprobs, _ = token_logprobs(model, ppo.ids, ppo.attention_mask, ppo.prompt_len, cfg.temperature, cfg.bf16)
        with use_adapter(model, REFERENCE):
            ref_logprobs, _ = token_logprobs(model, ppo.ids, ppo.attention_mask, ppo.prompt_len, cfg.temperature,
                                             cfg.bf16)
        kl = ((logprobs - ref_logprobs) * ppo.response_mask).sum(1)
        chats = [[{"role": "user", "content": t}] for t in texts]
        sft_score = score(reward_model, reward_tokenizer, chats, sft.texts, cfg.batch_size, cfg.bf16)
        ppo_score = score(reward_model, reward_tokenizer, chats, ppo.texts, cfg.batch_size, cfg.bf16)
        names, pcts = [p["name"] for p in batch], [p["pct_text"] for p in batch]
        sft_ok, ppo_ok = shield_pass(sft.texts, names, pcts), shield_pass(ppo.texts, names, pcts)
        for j, p in enumerate(batch):
            rows.append({"customer_id": p["customer_id"], "name": p["name"], "channel": p["channel"],
                         "offer": p["pct_text"] or "none", "sft": sft.texts[j], "ppo": ppo.texts[j],
                         "sft_score": sft_score[j].item(), "ppo_score": ppo_score[j].item(),
                         "sft_shield": bool(sft_ok[j]), "ppo_shield": bool(ppo_ok[j]), "kl": kl[j].item()})
    return rows


def summarise(rows: list[dict], kl_target: float) -> dict:
    """The gate's figures from the comparison rows."""
    ppo, sft = np.array([r["ppo_score"] for r in rows]), np.array([r["sft_score"] for r in rows])
    return {"win_rate": float(np.mean((ppo > sft) + 0.5 * (ppo == sft))),
            "kl": float(np.mean([r["kl"] for r in rows])), "kl_target": kl_target,
            "shield_pass_rate": float(np.mean([r["ppo_shield"] for r in rows])),
            "sft_shield_pass_rate": float(np.mean([r["sft_shield"] for r in rows])),
            "mean_length": float(np.mean([len(r["ppo"]) for r in rows])),
            "sft_mean_length": float(np.mean([len(r["sft"]) for r in rows])),
            "mean_score": float(ppo.mean()), "sft_mean_score": float(sft.mean()), "prompts": len(rows)}


def gate(m: dict) -> dict:
    """Each condition of the gate and whether all hold."""
    checks = {"win_rate > 0.5": m["win_rate"] > 0.5, "kl <= kl_target": m["kl"] <= m["kl_target"],
              "shield_pass_rate >= sft_shield_pass_rate": m["shield_pass_rate"] >= m["sft_shield_pass_rate"]}
    return {"checks": checks, "passed": all(checks.values())}


def gate_table(m: dict, verdict: dict) -> str:
    """The gate as a small fixed-width table: metric, PPO, SFT, rule."""
    rows = [("win rate (RM judge)", m["win_rate"], 1 - m["win_rate"], "PPO > 0.5 (ties count half)"),
            ("KL to SFT (nats)", m["kl"], 0.0, f"PPO <= target {m['kl_target']:.2f}"),
            ("shield pass rate", m["shield_pass_rate"], m["sft_shield_pass_rate"], "PPO >= SFT"),
            ("mean length (chars)", m["mean_length"], m["sft_mean_length"], "reported"),
            ("mean RM score", m["mean_score"], m["sft_mean_score"], "reported")]
    lines = [f"{'metric':<22}{'PPO':>9}{'SFT':>9}   rule"]
    lines += [f"{name:<22}{ppo:>9.3f}{sft:>9.3f}   {rule}" for name, ppo, sft, rule in rows]
    lines.append(f"gate {'PASSED' if verdict['passed'] else 'FAILED'} on {m['prompts']} held-out retention prompts")
    return "\n".join(lines)


def samples_markdown(rows: list[dict], n: int = 20) -> str:
    """The first n comparisons side by side, for a person to read."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ") or "*(empty)*"

    out = ["# PPO-text vs SFT: held-out retention prompts", "",
           "Score: reward model (higher is better). Shield: passes every check as written.", "",
           "| # | customer | offer | SFT message | SFT score / shield | PPO message | PPO score / shield |",
           "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows[:n], 1):
        out.append(f"| {i} | {cell(r['name'])} ({r['channel']}) | {r['offer']} | {cell(r['sft'])} | "
                   f"{r['sft_score']:.2f} / {'pass' if r['sft_shield'] else 'FAIL'} | {cell(r['ppo'])} | "
                   f"{r['ppo_score']:.2f} / {'pass' if r['ppo_shield'] else 'FAIL'} |")
    return "\n".join(out) + "\n"
