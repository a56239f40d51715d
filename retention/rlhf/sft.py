"""Supervised fine-tuning with LoRA (TRL's SFTTrainer), and loading and sampling a LoRA message policy.

A policy directory (SFT or PPO-text) holds a PEFT LoRA adapter saved with `save_pretrained` (adapter_config.json,
adapter_model.safetensors) and the tokenizer files, never the base weights: the base is resolved at load time by
`base_model_path(artifact_root, base_model)`, so the directory moves to GCS as it is and vLLM serves it as a
`LoRARequest` on the configured base.
"""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from retention.messages.base_model import BASE_NAME, base_model_path

LORA_R, LORA_ALPHA, LORA_DROPOUT = 16, 32, 0.0
"""No LoRA dropout: PPO needs none (its first ratio must be exactly 1), TRL turns it off for reward models, and a few
hundred SFT steps do not overfit."""
POLICY, REFERENCE = "default", "sft"
"""Adapter names inside one PeftModel: the trained policy and the frozen SFT reference (PPO-text, the gate)."""


@dataclass(frozen=True)
class SFTParams:
    """The budget of one SFT run."""

    steps: int
    """Optimizer steps."""
    batch_size: int
    """Sequences per step."""
    learning_rate: float
    """Peak learning rate of the LoRA weights (cosine decay, 10 % warm-up)."""
    max_length: int
    """Longest tokenised prompt + completion; longer chat pairs are left out, not cut."""
    retention_share: float
    """Share of retention messages in the mix; the rest are OASST1 chat pairs."""
    eval_size: int
    """Validation rows of each source for the held-out loss before and after training."""
    bf16: bool = True
    """bf16 autocast, fp32 master weights (bf16 matmuls ran 3.5x faster than fp32 on this AMX CPU)."""
    load_in_8bit: bool = False
    """Load the frozen base in 8 bits through bitsandbytes (GPU only)."""


def lora_config(task_type: str) -> LoraConfig:
    """LoRA on every linear layer of the transformer, r=16, alpha=32; the reward model also trains its score head."""
    return LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT, target_modules="all-linear",
                      task_type=task_type, modules_to_save=["score"] if task_type == "SEQ_CLS" else None)


def quantization(load_in_8bit: bool):
    """The 8-bit BitsAndBytesConfig when asked for, else None (bitsandbytes is only needed, and imported, then)."""
    if not load_in_8bit:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_8bit=True)


def autocast(enabled: bool, device: torch.device | str = "cpu"):
    """bf16 autocast on the model's device type, or nothing."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


# data


def fits(row: dict, tokenizer, max_length: int) -> bool:
    """The chat rendered from the record fits in max_length tokens."""
    chat = row["prompt"] + row.get("completion", [])
    return len(tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"]) <= max_length


def mix(retention: list[dict], chat: list[dict], n: int, retention_share: float, seed: int) -> list[dict]:
    """n rows: round(n * share) retention rows and the rest chat rows, each drawn without replacement, shuffled."""
    rng = np.random.default_rng(seed)
    k = int(round(n * retention_share))
    rows = [retention[i] for i in rng.choice(len(retention), min(k, len(retention)), replace=False)]
    rows += [chat[i] for i in rng.choice(len(chat), min(n - k, len(chat)), replace=False)]
    return [rows[i] for i in rng.permutation(len(rows))]


def as_dataset(rows: list[dict]) -> Dataset:
    """TRL's conversational prompt-completion dataset (loss on the completion only)."""
    return Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])


# training


def make_sft_trainer(base: str, train_rows: list[dict], eval_rows: list[dict], p: SFTParams, seed: int,
                     output_dir: str):
    """SFTTrainer for a LoRA adapter on the base; the loss is on the completion only (prompt-completion data)."""
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(base)
    args = SFTConfig(
        output_dir=output_dir, max_steps=p.steps, per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=p.batch_size, learning_rate=p.learning_rate, lr_scheduler_type="cosine",
        warmup_steps=p.steps // 10, logging_steps=max(1, p.steps // 20), max_length=p.max_length, bf16=p.bf16,
        gradient_checkpointing=False, save_strategy="no", report_to="none", seed=seed,
        model_init_kwargs={"dtype": torch.float32}, dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
    )
    return SFTTrainer(model=base, args=args, train_dataset=as_dataset(train_rows), eval_dataset=as_dataset(eval_rows),
                      processing_class=tokenizer, peft_config=lora_config("CAUSAL_LM"),
                      quantization_config=quantization(p.load_in_8bit))


def train_sft(base: str, train_rows: list[dict], eval_rows: list[dict], p: SFTParams, seed: int):
    """Fit the LoRA adapter; return the trainer and the held-out loss before and after training."""
    with tempfile.TemporaryDirectory() as scratch:  # no checkpoints are kept: the caller saves the adapter
        trainer = make_sft_trainer(base, train_rows, eval_rows, p, seed, scratch)
        before = trainer.evaluate()["eval_loss"]
        trainer.train()
        after = trainer.evaluate()["eval_loss"]
    return trainer, {"eval_loss_before": before, "eval_loss_after": after}


def logged_losses(trainer) -> list[dict]:
    """(step, loss) of every training log line."""
    return [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]


def save_adapter(model: PeftModel, tokenizer, out: Path, base_model: str = "", adapter: str = POLICY) -> None:
    """The adapter and tokenizer, with the configured base's name (not a local path) in adapter_config.json."""
    model.peft_config[adapter].base_model_name_or_path = base_model or BASE_NAME
    model.save_pretrained(out, selected_adapters=[adapter], save_embedding_layers=False)  # embeddings never train
    tokenizer.save_pretrained(out)


# loading and sampling (PPO-text, the gate and the generator)


def load_policy(model_dir: str | Path, artifact_root: str | Path, base_model: str = "",
                is_trainable: bool = False) -> tuple[PeftModel, object]:
    """The base (resolved from the config, not from adapter_config.json) with the LoRA adapter in `model_dir`."""
    base = AutoModelForCausalLM.from_pretrained(base_model_path(Path(artifact_root), base_model), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(model_dir), adapter_name=POLICY, is_trainable=is_trainable)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return model, tokenizer


@dataclass
class Samples:
    """Sampled replies to a batch of prompts, on the token grid the PPO losses use."""

    ids: torch.Tensor
    """(B, P + R) left-padded prompt, then the response padded after its EOS."""
    attention_mask: torch.Tensor
    """(B, P + R) 1 on prompt and response tokens (the EOS included)."""
    response_mask: torch.Tensor
    """(B, R) 1 on response tokens up to and including the first EOS."""
    prompt_len: int
    """P: where the responses start."""
    texts: list[str]
    """The responses as text, special tokens dropped, whitespace stripped."""


def chat_texts(tokenizer, prompts: list[str]) -> list[str]:
    """Each prompt as the one user turn of a chat, ready for the assistant's reply."""
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts]


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float = 1.0,
           bf16: bool = False, do_sample: bool = True) -> Samples:
    """Replies to `prompts` from the active adapter: pure sampling at `temperature` (greedy when not do_sample)."""
    enc = tokenizer(chat_texts(tokenizer, prompts), return_tensors="pt", padding=True, padding_side="left",
                    add_special_tokens=False).to(model.device)
    sampling = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if do_sample else dict(do_sample=False)
    with autocast(bf16, model.device):
        out = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, **sampling)
    prompt_len = enc["input_ids"].shape[1]
    response = out[:, prompt_len:]
    is_eos = (response == tokenizer.eos_token_id).long()
    response_mask = ((is_eos.cumsum(1) - is_eos) == 0).long()  # nothing before this token was an EOS
    texts = [tokenizer.decode(r[m.bool()], skip_special_tokens=True).strip() for r, m in zip(response, response_mask)]
    return Samples(out, torch.cat([enc["attention_mask"], response_mask], 1), response_mask, prompt_len, texts)


def loss_plot(points: list[dict], path: Path, title: str) -> None:
    """Logged training loss against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([p["step"] for p in points], [p["loss"] for p in points], marker="o", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
