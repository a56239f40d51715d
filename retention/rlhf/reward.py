"""The reward model: a Bradley-Terry scorer trained with TRL's RewardTrainer, LoRA on the same base as the policy.

Loss, per pair: -log sigma(r(x, y_chosen) - r(x, y_rejected)), r being a linear score head on the last token of
the chat rendered from the prompt and the reply. Pairs are tokenised here (`reward_ids`) and handed to the trainer
as `chosen_ids`/`rejected_ids`, so training and every later scoring (PPO-text, the gate) see identical tokens.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from retention.messages.base_model import base_model_path
from retention.rlhf.sft import autocast, lora_config, quantization


@dataclass(frozen=True)
class RewardParams:
    """The budget of one reward-model run."""

    steps: int
    """Optimizer steps."""
    batch_size: int
    """Pairs per step."""
    learning_rate: float
    """Peak learning rate of the LoRA weights and the score head."""
    max_length: int
    """Longest tokenised chat; longer pairs are left out (TRL filters, it does not cut)."""
    mix: dict
    """Share of training pairs per source (retention, hh_harmless, shp_helpful, oasst_ranked)."""
    eval_size: int
    """Held-out test pairs per reported source (0: all that fit max_length)."""
    eval_sources: tuple = ("hh_harmless", "retention")
    """Sources whose held-out accuracy is reported (each separately)."""
    bf16: bool = True
    """bf16 autocast, fp32 master weights."""
    load_in_8bit: bool = False
    """Load the frozen base in 8 bits through bitsandbytes (GPU only)."""


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigma(r_chosen - r_rejected): the loss RewardTrainer minimises."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def reward_ids(tokenizer, prompt: list[dict], reply: str) -> list[int]:
    """Token ids of the chat prompt + assistant reply, rendered as RewardTrainer renders conversational pairs."""
    chat = prompt + [{"role": "assistant", "content": reply}]
    return tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"]


def tokenize_pairs(rows: list[dict], tokenizer, max_length: int, n: int = 0, seed: int = 0) -> list[dict]:
    """Up to n pairs (0: all) whose both sides fit max_length tokens, in a seeded random order, pre-tokenised."""
    out = []
    for i in np.random.default_rng(seed).permutation(len(rows)):
        r = rows[i]
        chosen = reward_ids(tokenizer, r["prompt"], r["chosen"][0]["content"])
        rejected = reward_ids(tokenizer, r["prompt"], r["rejected"][0]["content"])
        if len(chosen) <= max_length and len(rejected) <= max_length:
            out.append({"chosen_ids": chosen, "rejected_ids": rejected, "source": r["source"]})
        if len(out) == n:
            break
    return out


def make_reward_trainer(base: str, train: list[dict], p: RewardParams, seed: int, output_dir: str):
    """RewardTrainer for a LoRA reward model (adapter + score head) on the base, fed pre-tokenised pairs."""
    from trl import RewardConfig, RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(base)
    args = RewardConfig(
        output_dir=output_dir, max_steps=p.steps, per_device_train_batch_size=p.batch_size,
        learning_rate=p.learning_rate, lr_scheduler_type="cosine", warmup_steps=p.steps // 10,
        logging_steps=max(1, p.steps // 20), max_length=p.max_length, bf16=p.bf16, gradient_checkpointing=False,
        save_strategy="no", report_to="none", seed=seed, model_init_kwargs={"dtype": torch.float32},
        dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
    )
    pairs = Dataset.from_list([{"chosen_ids": r["chosen_ids"], "rejected_ids": r["rejected_ids"]} for r in train])
    return RewardTrainer(model=base, args=args, train_dataset=pairs, processing_class=tokenizer,
                         peft_config=lora_config("SEQ_CLS"), quantization_config=quantization(p.load_in_8bit))


def train_reward(base: str, train: list[dict], p: RewardParams, seed: int):
    """Fit the reward model; return the trainer (its model is the PEFT model)."""
    with tempfile.TemporaryDirectory() as scratch:  # no checkpoints are kept: the caller saves the adapter
        trainer = make_reward_trainer(base, train, p, seed, scratch)
        trainer.train()
    return trainer


def load_reward(model_dir: str | Path, artifact_root: str | Path, base_model: str = "") -> tuple[PeftModel, object]:
    """The base as a one-output sequence classifier with the reward LoRA adapter and score head of `model_dir`."""
    base = AutoModelForSequenceClassification.from_pretrained(
        base_model_path(Path(artifact_root), base_model), num_labels=1, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base.config.pad_token_id = tokenizer.pad_token_id  # the classifier reads the last non-pad token
    return PeftModel.from_pretrained(base, str(model_dir)).eval(), tokenizer


@torch.no_grad()
def score_ids(model, ids: list[list[int]], pad_token_id: int, batch_size: int = 8, bf16: bool = False) -> torch.Tensor:
    """Reward of each token sequence, right-padded in batches as DataCollatorForPreference pads them."""
    out = []
    for i in range(0, len(ids), batch_size):
        chunk = [torch.tensor(x) for x in ids[i:i + batch_size]]
        input_ids = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True, padding_value=pad_token_id)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(x) for x in chunk], batch_first=True)
        with autocast(bf16, model.device):
            logits = model(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device)).logits
        out.append(logits.float().squeeze(-1).cpu())
    return torch.cat(out)


def score(model, tokenizer, prompts: list[list[dict]], replies: list[str], batch_size: int = 8,
          bf16: bool = False) -> torch.Tensor:
    """Reward of each (chat prompt, reply)."""
    ids = [reward_ids(tokenizer, p, r) for p, r in zip(prompts, replies)]
    return score_ids(model, ids, tokenizer.pad_token_id, batch_size, bf16)


def pairwise_accuracy(model, pairs: list[dict], pad_token_id: int, batch_size: int = 8, bf16: bool = False) -> float:
    """Share of held-out pairs whose chosen reply scores strictly higher than the rejected one."""
    chosen = score_ids(model, [r["chosen_ids"] for r in pairs], pad_token_id, batch_size, bf16)
    rejected = score_ids(model, [r["rejected_ids"] for r in pairs], pad_token_id, batch_size, bf16)
    return float((chosen > rejected).float().mean())
