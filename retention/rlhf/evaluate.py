"""The PPO-text gate: PPO against SFT on held-out retention prompts, judged twice.

For each prompt the SFT adapter and the PPO adapter each sample a message (with the same random numbers, so two
identical policies tie). Two judges compare each pair:
- the reward model PPO was trained against (`rm_win_rate`: reported, the old gate's number; it cannot see reward
  hacking, since it is what PPO climbed);
- the independent judge (`win_rate`, the gate's): a second Bradley-Terry reward model trained with another seed
  on pairs the first never saw (training/train_reward.py --judge), combined with the grounding check: a message the
  grounding check rejects loses to one it passes, and two rejected messages tie.
Ties count half. The gate passes when PPO wins more than half by the independent judge, its mean KL to SFT (nats
per message, on its own samples) is within the target, and its shield pass rate (grounding included) is at least
SFT's. `agreement` is the share of prompts on which both judges prefer the same message (or both call a tie).
"""
from __future__ import annotations

import numpy as np
import torch

from retention.messages.grounding import GROUNDING
from retention.rlhf.ppo_text import PPOConfig, prompt_facts, shield_failures, token_logprobs, use_adapter
from retention.rlhf.reward import score
from retention.rlhf.sft import REFERENCE, sample

GATE_KEYS = ("win_rate", "rm_win_rate", "agreement", "kl", "kl_target", "shield_pass_rate", "sft_shield_pass_rate",
             "mean_length")
"""The gate's figures, top-level keys of the PPO-text metrics.json."""


@torch.no_grad()
def compare(model, tokenizer, reward_model, reward_tokenizer, judge_model, judge_tokenizer, prompts: list[dict],
            cfg: PPOConfig) -> list[dict]:
    """One row per prompt: both messages, their scores by the reward model and the judge, the shield checks each
    fails, and PPO's KL to SFT."""
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
        scores = {f"{who}_{judge}": score(m, tok, chats, s.texts, cfg.batch_size, cfg.bf16).tolist()
                  for who, s in (("sft", sft), ("ppo", ppo))
                  for judge, m, tok in (("score", reward_model, reward_tokenizer),
                                        ("judge", judge_model, judge_tokenizer))}
        failed = {who: shield_failures(s.texts, *prompt_facts(batch)) for who, s in (("sft", sft), ("ppo", ppo))}
        for j, p in enumerate(batch):
            rows.append({"customer_id": p["customer_id"], "name": p["name"], "channel": p["channel"],
                         "offer": p["pct_text"] or "none", "sft": sft.texts[j], "ppo": ppo.texts[j],
                         **{k: v[j] for k, v in scores.items()},
                         "sft_failed": failed["sft"][j], "ppo_failed": failed["ppo"][j], "kl": kl[j].item()})
    return rows


def grounded(failed: list[str]) -> bool:
    """The message passes every grounding check."""
    return not set(failed) & set(GROUNDING)


def preferences(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(reward model, independent judge): +1 where the judge prefers PPO's message, -1 SFT's, 0 a tie."""
    rm = np.sign([r["ppo_score"] - r["sft_score"] for r in rows])
    ppo_ok = np.array([grounded(r["ppo_failed"]) for r in rows], dtype=bool)
    sft_ok = np.array([grounded(r["sft_failed"]) for r in rows], dtype=bool)
    judge = np.sign([r["ppo_judge"] - r["sft_judge"] for r in rows])
    judge = np.select([ppo_ok & sft_ok, ppo_ok != sft_ok], [judge, np.where(ppo_ok, 1.0, -1.0)], default=0.0)
    return rm, judge


def summarise(rows: list[dict], kl_target: float) -> dict:
    """The gate's figures from the comparison rows."""
    rm, judge = preferences(rows)
    ppo_pass = [not r["ppo_failed"] for r in rows]
    sft_pass = [not r["sft_failed"] for r in rows]
    return {"win_rate": float(np.mean((judge + 1) / 2)), "rm_win_rate": float(np.mean((rm + 1) / 2)),
            "agreement": float(np.mean(rm == judge)),
            "kl": float(np.mean([r["kl"] for r in rows])), "kl_target": kl_target,
            "shield_pass_rate": float(np.mean(ppo_pass)), "sft_shield_pass_rate": float(np.mean(sft_pass)),
            "grounded_rate": float(np.mean([grounded(r["ppo_failed"]) for r in rows])),
            "sft_grounded_rate": float(np.mean([grounded(r["sft_failed"]) for r in rows])),
            "mean_length": float(np.mean([len(r["ppo"]) for r in rows])),
            "sft_mean_length": float(np.mean([len(r["sft"]) for r in rows])),
            "mean_score": float(np.mean([r["ppo_score"] for r in rows])),
            "sft_mean_score": float(np.mean([r["sft_score"] for r in rows])),
            "mean_judge_score": float(np.mean([r["ppo_judge"] for r in rows])),
            "sft_mean_judge_score": float(np.mean([r["sft_judge"] for r in rows])), "prompts": len(rows)}


def gate(m: dict) -> dict:
    """Each condition of the gate and whether all hold."""
    checks = {"win_rate > 0.5": m["win_rate"] > 0.5, "kl <= kl_target": m["kl"] <= m["kl_target"],
              "shield_pass_rate >= sft_shield_pass_rate": m["shield_pass_rate"] >= m["sft_shield_pass_rate"]}
    return {"checks": checks, "passed": all(checks.values())}


def gate_table(m: dict, verdict: dict) -> str:
    """The gate as a small fixed-width table: metric, PPO, SFT, rule."""
    rows = [("win rate (judge)", m["win_rate"], 1 - m["win_rate"], "PPO > 0.5 (ties count half)"),
            ("win rate (trained RM)", m["rm_win_rate"], 1 - m["rm_win_rate"], "reported: the RM PPO climbed"),
            ("judges agree", m["agreement"], m["agreement"], "reported: same preference"),
            ("KL to SFT (nats)", m["kl"], 0.0, f"PPO <= target {m['kl_target']:.2f}"),
            ("shield pass rate", m["shield_pass_rate"], m["sft_shield_pass_rate"], "PPO >= SFT (grounding incl.)"),
            ("grounded rate", m["grounded_rate"], m["sft_grounded_rate"], "reported"),
            ("mean length (chars)", m["mean_length"], m["sft_mean_length"], "reported"),
            ("mean RM score", m["mean_score"], m["sft_mean_score"], "reported"),
            ("mean judge score", m["mean_judge_score"], m["sft_mean_judge_score"], "reported")]
    lines = [f"{'metric':<24}{'PPO':>9}{'SFT':>9}   rule"]
    lines += [f"{name:<24}{ppo:>9.3f}{sft:>9.3f}   {rule}" for name, ppo, sft, rule in rows]
    lines.append(f"gate {'PASSED' if verdict['passed'] else 'FAILED'} on {m['prompts']} held-out retention prompts")
    return "\n".join(lines)


def samples_markdown(rows: list[dict], n: int = 20) -> str:
    """The first n comparisons side by side, for a person to read."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ") or "*(empty)*"

    def verdict(r: dict, who: str) -> str:
        failed = r[f"{who}_failed"]
        shield = "pass" if not failed else "FAIL " + ", ".join(failed)
        return f"{r[f'{who}_score']:.2f} / {r[f'{who}_judge']:.2f} / {shield}"

    rm, judge = preferences(rows)
    side = {1.0: "PPO", -1.0: "SFT", 0.0: "tie"}
    out = ["# PPO-text vs SFT: held-out retention prompts", "",
           "Scores: RM = the reward model PPO was trained against; judge = the independent reward model (another "
           "seed, unseen pairs). Shield: pass, or the checks the message fails as written (grounding included). "
           "Winner: by the judge, where a message the grounding check rejects loses (RM's pick in brackets).", "",
           "| # | customer | offer | SFT message | SFT RM / judge / shield | PPO message | PPO RM / judge / shield "
           "| winner |",
           "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows[:n]):
        out.append(f"| {i + 1} | {cell(r['name'])} ({r['channel']}) | {r['offer']} | {cell(r['sft'])} | "
                   f"{verdict(r, 'sft')} | {cell(r['ppo'])} | {verdict(r, 'ppo')} | "
                   f"{side[judge[i]]} ({side[rm[i]]}) |")
    return "\n".join(out) + "\n"
