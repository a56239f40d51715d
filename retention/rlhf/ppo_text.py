"""PPO on text with an adaptive KL controller, written the way CleanRL writes PPO: the algorithm in one file.

One PeftModel holds two LoRA adapters on one copy of the base: `default`, the policy (initialised from the SFT
adapter and trained), and `sft`, the frozen SFT reference. A value head reads the policy's last hidden state.
Each update:
  rollout      sample a message for each prompt of a batch of retention prompts
  score        reward-model score, normalised on the SFT policy's samples (Ziegler et al. 2019, section 2),
               minus a penalty when the shield (grounding check included) would reject the message
  KL penalty   per-token reward -beta * (log pi(y_t) - log pi_sft(y_t)), the score added on the last token
  GAE          advantages and returns over the response tokens
  update       clipped policy loss + clipped value loss, a few epochs over minibatches
  controller   beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon)   (Ziegler et al. 2019)

References: Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences" (arXiv:1909.08593);
CleanRL's ppo.py (https://github.com/vwxyzjn/cleanrl); TRL's PPOTrainer before its removal for the LM bookkeeping.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from retention.messages.shield import CHECKS, evaluate
from retention.rlhf.reward import score
from retention.rlhf.sft import POLICY, REFERENCE, autocast, sample


@dataclass(frozen=True)
class PPOConfig:
    """PPO-text hyper-parameters."""

    steps: int = 12
    """PPO updates, one rollout batch each."""
    batch_size: int = 8
    """Prompts (messages) per rollout."""
    minibatch_size: int = 8
    """Messages per gradient step."""
    update_epochs: int = 2
    """Passes over each rollout batch."""
    learning_rate: float = 1e-4
    """Adam learning rate of the policy's LoRA weights and the value head."""
    max_new_tokens: int = 64
    """Longest message in tokens (200 characters is ~45)."""
    temperature: float = 1.0
    """Sampling temperature of rollouts and of the gate; the log-probabilities use the same."""
    gamma: float = 1.0
    """Discount: one reward per message, so none."""
    lam: float = 0.95
    """GAE lambda."""
    clip_coef: float = 0.2
    """PPO ratio clip."""
    vf_coef: float = 0.1
    """Value-loss weight."""
    max_grad_norm: float = 1.0
    """Gradient clip."""
    init_kl_coef: float = 0.2
    """Starting beta."""
    kl_target: float = 6.0
    """Target KL(pi || pi_sft) per message, in nats, for the controller and the gate."""
    kl_horizon: int = 10000
    """Controller horizon in samples: beta moves at most 20 % * n / horizon per update."""
    shield_penalty: float = 1.0
    """Subtracted from the normalised score of a message the shield would reject."""
    bf16: bool = True
    """bf16 autocast for the forward passes (fp32 weights): ~3x faster matmuls on CPUs with AMX and on GPUs."""
    bf16_sampling: bool = False
    """bf16 autocast for sampling too; off because decoding one token at a time is memory-bound and autocast re-casts
    every weight at each token (25 % slower here on CPU)."""
    seed: int = 42
    """Prompt order and sampling."""


class AdaptiveKLController:
    """The adaptive KL coefficient of Ziegler et al. 2019: beta grows when KL is above target, shrinks below."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        """Move beta after `n_steps` samples whose mean KL was `current_kl`; return the new beta."""
        error = float(np.clip(current_kl / self.target - 1, -0.2, 0.2))
        self.value *= 1 + error * n_steps / self.horizon
        return self.value


@contextlib.contextmanager
def use_adapter(model, name: str):
    """Run the block with adapter `name` active and frozen, then make the policy adapter active and trainable."""
    model.set_adapter(name, inference_mode=True)
    try:
        yield model
    finally:
        model.set_adapter(POLICY)


def token_logprobs(model, ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int, temperature: float,
                   bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(y_t | x, y_<t) of each response token (B, R) and the hidden states that emitted them (B, R, H)."""
    # positions from the mask, as generate() numbers left-padded prompts
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    response_len = ids.shape[1] - prompt_len
    with autocast(bf16, ids.device):
        out = model(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids,
                    output_hidden_states=True, logits_to_keep=response_len + 1)
    logits = out.logits[:, :-1].float() / temperature  # (B, R, V): position t predicts token t + 1
    logprobs = logits.log_softmax(-1).gather(-1, ids[:, prompt_len:, None]).squeeze(-1)
    return logprobs, out.hidden_states[-1][:, prompt_len - 1:-1]


class Agent(nn.Module):
    """The PEFT policy plus a value head on its last hidden state."""

    def __init__(self, model, temperature: float = 1.0, bf16: bool = False):
        super().__init__()
        self.model = model
        self.temperature = temperature
        self.bf16 = bf16
        self.value_head = nn.Linear(model.config.hidden_size, 1, device=model.device)
        # start at V = 0, so the first advantages are the plain returns rather than a random head's noise
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int):
        """Log-probabilities (B, R) and values (B, R) of the response tokens under the active adapter."""
        logprobs, hidden = token_logprobs(self.model, ids, attention_mask, prompt_len, self.temperature, self.bf16)
        return logprobs, self.value_head(hidden.float()).squeeze(-1)


# reward


def shield_failures(texts: list[str], names: list[str], pct_texts: list[str], tenure=None, charges=None
                    ) -> list[list[str]]:
    """The shield checks (shield.CHECKS, grounding included) each message fails as written, as the daily shield
    stage judges it: `names` are the customers' cleaned names, `pct_texts` their offers ("" for none), `tenure` and
    `charges` the facts the prompt gave (None: not given). The messages of one call are one batch: naming
    another's customer fails "others"."""
    n = len(texts)
    rows = pd.DataFrame({"customer_id": [f"prompt-{i}" for i in range(n)], "name": names,
                         "offer_pct": [float(p.rstrip("%")) / 100 if p else 0.0 for p in pct_texts],
                         "tenure_months": np.nan if tenure is None else tenure,
                         "monthly_charges": np.nan if charges is None else charges})
    codes, _ = evaluate(rows, pd.Series(texts, dtype="str"), rows)
    return [[check for check in CHECKS if codes[check][i] != 0] for i in range(n)]


def prompt_facts(prompts: list[dict]) -> tuple[list, list, list, list]:
    """(names, pct_texts, tenure, charges) of retention prompt records, as shield_failures takes them (NaN where a
    record predates its tenure or charges)."""
    return ([p["name"] for p in prompts], [p["pct_text"] for p in prompts],
            [p.get("tenure_months", np.nan) for p in prompts], [p.get("monthly_charges", np.nan) for p in prompts])


def shield_pass(texts: list[str], names: list[str], pct_texts: list[str], tenure=None, charges=None) -> np.ndarray:
    """True where a message passes every shield check as written (the grounding check included)."""
    return np.array([not failed for failed in shield_failures(texts, names, pct_texts, tenure, charges)], dtype=bool)


def token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
                  beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards -beta * KL_t, plus the message's score on its last token; and the KL of each message."""
    kl = (logprobs - ref_logprobs) * mask  # (B, R)
    rewards = -beta * kl
    last = mask.sum(1).long() - 1  # index of each message's last token (its EOS when it stopped)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards, kl.sum(1)


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimates and returns over the response tokens (B, R); masked tokens end the episode."""
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    lastgaelam = rewards.new_zeros(rewards.shape[0])
    for t in reversed(range(rewards.shape[1])):
        nextvalues = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(lastgaelam)
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages[:, t] = lastgaelam
    advantages = advantages * mask
    return advantages, advantages + values


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum()


def masked_whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


# training


def train(cfg: PPOConfig, model, tokenizer, reward_model, reward_tokenizer, prompts: list[dict]):
    """Run PPO on `model` (adapters `default` trainable, `sft` frozen); return the agent and per-step logs."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    # eval mode throughout: no dropout, so a minibatch's first ratio is exactly 1 (gradients flow all the same)
    model.eval()
    agent = Agent(model, cfg.temperature, cfg.bf16)
    optimizer = torch.optim.AdamW([p for p in agent.parameters() if p.requires_grad], lr=cfg.learning_rate, eps=1e-5)
    kl_ctl = AdaptiveKLController(cfg.init_kl_coef, cfg.kl_target, cfg.kl_horizon)
    score_mean = score_std = None
    history = []
    bar = tqdm(range(cfg.steps), desc="ppo-text")
    for step in bar:
        started = time.perf_counter()
        batch = [prompts[i] for i in rng.choice(len(prompts), cfg.batch_size, replace=False)]

        # rollout
        s = sample(model, tokenizer, [b["prompt"] for b in batch], cfg.max_new_tokens, cfg.temperature,
                   cfg.bf16_sampling)
        mask = s.response_mask.float()  # (B, R)
        with torch.no_grad():
            logprobs, values = agent(s.ids, s.attention_mask, s.prompt_len)
            with use_adapter(model, REFERENCE):
                ref_logprobs, _ = token_logprobs(model, s.ids, s.attention_mask, s.prompt_len, cfg.temperature,
                                                 cfg.bf16)

        # score: normalised on the first batch, sampled from the SFT policy itself (Ziegler et al. 2019)
        raw = score(reward_model, reward_tokenizer, [[{"role": "user", "content": b["prompt"]}] for b in batch],
                    s.texts, cfg.batch_size, cfg.bf16)
        if score_mean is None:
            score_mean, score_std = raw.mean().item(), raw.std().item() + 1e-6
        passed = shield_pass(s.texts, *prompt_facts(batch))
        scores = (raw - score_mean) / score_std - cfg.shield_penalty * torch.tensor(~passed, dtype=torch.float32)
        rewards, kl = token_rewards(scores.to(mask.device), logprobs, ref_logprobs, mask, kl_ctl.value)

        # bootstrap value: none, each message is one finished episode
        advantages, returns = compute_gae(rewards, values, mask, cfg.gamma, cfg.lam)
        advantages = masked_whiten(advantages, mask)

        # policy and value update
        stats = []
        for _ in range(cfg.update_epochs):
            order = torch.randperm(cfg.batch_size, device=mask.device)
            for start in range(0, cfg.batch_size, cfg.minibatch_size):
                mb = order[start:start + cfg.minibatch_size]
                mb_mask = mask[mb]
                new_logprobs, new_values = agent(s.ids[mb], s.attention_mask[mb], s.prompt_len)
                logratio = new_logprobs - logprobs[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = masked_mean((ratio - 1) - logratio, mb_mask)  # http://joschu.net/blog/kl-approx.html
                    clipfrac = masked_mean(((ratio - 1).abs() > cfg.clip_coef).float(), mb_mask)

                # policy loss
                pg_loss1 = -advantages[mb] * ratio
                pg_loss2 = -advantages[mb] * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)
                pg_loss = masked_mean(torch.max(pg_loss1, pg_loss2), mb_mask)

                # value loss, clipped around the rollout's values
                v_clipped = values[mb] + torch.clamp(new_values - values[mb], -cfg.clip_coef, cfg.clip_coef)
                v_loss = 0.5 * masked_mean(torch.max((new_values - returns[mb]) ** 2,
                                                     (v_clipped - returns[mb]) ** 2), mb_mask)

                loss = pg_loss + cfg.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                optimizer.step()
                stats.append([pg_loss.item(), v_loss.item(), approx_kl.item(), clipfrac.item()])

        # adaptive KL coefficient, from this batch's KL to the reference
        mean_kl = kl.mean().item()
        beta = kl_ctl.value
        kl_ctl.update(mean_kl, cfg.batch_size)
        pg, vl, akl, cf = np.mean(stats, axis=0)
        row = {"step": step + 1, "reward": scores.mean().item(), "score": raw.mean().item(), "kl": mean_kl,
               "beta": beta, "shield_pass_rate": float(passed.mean()),
               "mean_length": float(np.mean([len(t) for t in s.texts])), "pg_loss": pg, "v_loss": vl,
               "approx_kl": akl, "clipfrac": cf, "seconds": time.perf_counter() - started}
        history.append(row)
        bar.set_postfix(reward=f"{row['reward']:.2f}", kl=f"{mean_kl:.2f}", beta=f"{beta:.3f}",
                        shield=f"{row['shield_pass_rate']:.2f}")
    return agent, history


def learning_curve(history: list[dict], kl_target: float, path: Path) -> None:
    """Reward, KL (with its target), beta and shield pass rate per PPO step, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for ax, key, title in zip(axes, ("reward", "kl", "beta", "shield_pass_rate"),
                              ("reward (normalised score + shield)", "KL to SFT (nats / message)", "beta",
                               "shield pass rate")):
        ax.plot(steps, [h[key] for h in history], marker="o", markersize=3)
        ax.set_title(title)
        ax.set_xlabel("PPO step")
    axes[1].axhline(kl_target, color="grey", linestyle="--", label="target")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
