"""LLM message backends: `transformers` (batched, CPU here) and `vllm` (offline batches on a GPU, LoRA adapter).

Both take the prompts of `prompt.build_prompt` in the tokenizer's chat template, sample with one seed per customer,
day and candidate, and return one line of text per prompt (None where the generation failed or timed out).
`llm_messages` samples best-of-n candidates per contact, drops those the shield would reject, and keeps the one the
reward-model champion scores highest (the first that passes when there is no reward champion); a contact with no
passing candidate gets one more round, and the shield stage then puts the safe template in place of whatever still
fails. The model is the RLHF champion (a PEFT LoRA adapter over the base) when one exists, else the base instruct
model as it is.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, LogitsProcessor, LogitsProcessorList

from retention.config import Config
from retention.messages import shield
from retention.messages.prompt import RECORD_TAG, build_prompt
from retention.hashing import stable_hash
from retention.messages.base_model import base_model_path

log = logging.getLogger(__name__)

MAX_NEW_TOKENS = 60
"""Enough for a 200-character message (about 45 tokens), bounded so a rambling model costs little."""
TEMPERATURE, TOP_K, TOP_P = 0.7, 50, 0.9
"""Sampling of both backends: the 50 likeliest tokens, then the nucleus holding 90 % of their probability."""
BATCH_SIZE = 16
"""Prompts per transformers batch (CPU); vLLM schedules its own batches. A batch decodes until its longest reply
ends: 128 candidates on 2 shared cores took 92 CPU-s in batches of 16, 121 in 64 and 140 in 128."""
BATCH_TIMEOUT_S = 300.0
"""A transformers batch stops here; its unfinished rows count as failed (and are retried). A batch of 16 takes
5-20 s in bf16 with its shared prefix cached on a 2-core machine shared with other jobs (40-110 s in fp32 before)."""
ATTEMPTS = 2
"""Rounds of best-of-n: a contact none of whose candidates passes gets n new ones, then is left to the template."""
ADAPTER_CONFIG = "adapter_config.json"
"""The file that marks a PEFT adapter directory (the ppo_text champion)."""


@dataclass(frozen=True)
class Backend:
    """A loaded generator: its name for the `generator` column, its version for `message_model`, the call, and
    how candidates are drawn and chosen."""

    name: str
    version: str
    complete: Callable[[list[str], np.ndarray], list[str | None]]
    score: Callable[[list[str], list[str]], np.ndarray] | None = None
    """Reward of each (prompt, message) by the reward-model champion; None when there is none."""
    best_of_n: int = 1
    """Candidates sampled per contact and round."""
    brand: str = Config.brand_name
    """The brand the prompts name and the shield allows."""
    language: str = Config.language
    """The language the shield requires."""


# model and version


def champion_adapter(cfg: Config, name: str = "ppo_text") -> Path | None:
    """The adapter directory of champion `name` (the RLHF policy, or the reward model), None when there is none."""
    path = cfg.model_dir(name)
    return path if (path / ADAPTER_CONFIG).is_file() else None


def model_version(base: str, adapter: Path | None) -> str:
    """`ppo_text:<version>` of the champion (metrics.json, else the folder name), or `base:<base model>`."""
    if adapter is None:
        return f"base:{Path(base).name}"
    metrics = adapter / "metrics.json"
    version = json.loads(metrics.read_text())["version"] if metrics.is_file() else adapter.resolve().name
    return f"ppo_text:{version}"


@functools.lru_cache(maxsize=1)
def load_backend(cfg: Config) -> Backend:
    """The backend cfg.generator names, model loaded once per process (the CLI and a server call it often)."""
    if cfg.generator not in ("transformers", "vllm"):
        raise ValueError(f"generator {cfg.generator!r} is not an LLM backend (transformers | vllm)")
    if cfg.best_of_n < 1:
        raise ValueError(f"config best_of_n={cfg.best_of_n}: expected at least 1")
    base = base_model_path(cfg.artifacts, cfg.base_model)
    adapter = champion_adapter(cfg)
    version = model_version(base, adapter)
    choose = dict(score=load_scorer(cfg), best_of_n=cfg.best_of_n, brand=cfg.brand_name, language=cfg.language)
    if cfg.generator == "transformers":
        model, tokenizer = load_transformers(base, adapter)
        return Backend("transformers", version, functools.partial(transformers_complete, model, tokenizer), **choose)
    engine, lora = load_vllm(base, adapter)
    return Backend("vllm", version, functools.partial(vllm_complete, engine, lora), **choose)


def load_scorer(cfg: Config) -> Callable[[list[str], list[str]], np.ndarray] | None:
    """The reward-model champion as a scorer of (prompt, message) pairs; None when there is no champion (or only
    one candidate, which needs no choosing)."""
    reward_dir = champion_adapter(cfg, "reward")
    if reward_dir is None or cfg.best_of_n == 1:
        return None
    from retention.rlhf.reward import load_reward  # peft and the RLHF stack load only when there is a champion

    model, tokenizer = load_reward(reward_dir, cfg.artifacts, cfg.base_model)
    model = model.merge_and_unload().to(cpu_dtype())  # the LoRA merged, the trained score head kept
    log.info("best-of-%d: candidates scored by the reward model %s", cfg.best_of_n, reward_dir)
    return functools.partial(reward_scores, model, tokenizer)


def reward_scores(model, tokenizer, prompts: list[str], texts: list[str]) -> np.ndarray:
    """Reward of each message for its prompt, rendered as the reward model was trained (one user turn, the reply
    right-padded). As in generation, prompts with the same rules share a batch whose common prefix runs once."""
    from retention.rlhf.reward import reward_ids

    ids = [reward_ids(tokenizer, [{"role": "user", "content": p}], t) for p, t in zip(prompts, texts)]
    out = np.empty(len(ids))
    for group in _groups([_rules(p) for p in prompts]):
        for start in range(0, len(group), BATCH_SIZE):
            rows = group[start:start + BATCH_SIZE]
            out[rows] = _score_batch(model, [ids[i] for i in rows], tokenizer.pad_token_id)
    return out


def _score_batch(model, ids: list[list[int]], pad_token_id: int) -> np.ndarray:
    """The sequence classifier's score of each token sequence: the shared prefix through the base once, its cache
    repeated, then each row's rest right-padded (the classifier reads the last token that is not padding)."""
    prefix = _common_prefix(ids)
    rest = max(len(x) for x in ids) - prefix
    input_ids = torch.full((len(ids), rest), pad_token_id)  # (B, R)
    mask = torch.zeros((len(ids), prefix + rest), dtype=torch.long)  # (B, P + R)
    mask[:, :prefix] = 1
    for row, x in enumerate(ids):
        input_ids[row, :len(x) - prefix] = torch.tensor(x[prefix:])
        mask[row, prefix:len(x)] = 1
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        if prefix:
            model.model(input_ids=torch.tensor([ids[0][:prefix]]), past_key_values=cache, use_cache=True)
            cache.batch_repeat_interleave(len(ids))
        logits = model(input_ids=input_ids, attention_mask=mask, past_key_values=cache).logits  # (B, 1)
    return logits.float().squeeze(-1).numpy()


def chat_text(tokenizer, prompt: str) -> str:
    """The prompt as the single user turn of the tokenizer's chat template, ready for the assistant's reply."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


def row_seeds(customer_ids: pd.Series, ds: str, attempt: int) -> np.ndarray:
    """A sampling seed per customer, day and attempt (31 bits: what every sampler accepts)."""
    return (stable_hash(customer_ids.astype("str") + f"|{ds}|{attempt}") >> np.uint64(33)).astype(np.int64)


def one_line(text: str) -> str:
    """A reply as a message: whitespace runs (newlines too) made one space, a `Message:` label and quotes dropped."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^(?:message|assistant)\s*:\s*", "", text, flags=re.I)
    return text.strip("\"' ")


# transformers


def cpu_threads() -> int:
    """The cores this process may use (its CPU affinity, which a container or taskset narrows), not the host's."""
    return len(os.sched_getaffinity(0))


def cpu_dtype() -> torch.dtype:
    """bfloat16 where the CPU has bf16 matrix instructions (AMX or AVX512-BF16), else float32.

    SmolLM2-135M on 2 such cores, per token: prompt ~6x and decoding ~4x faster in bf16 than in fp32; without
    those instructions bf16 runs emulated and slower.
    """
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.is_file() else set()
    return torch.bfloat16 if flags & {"amx_bf16", "avx512_bf16"} else torch.float32


def load_transformers(base: str, adapter: Path | None):
    """(model, tokenizer) on CPU in eval mode, in cpu_dtype(): the base, with the adapter merged in when there is one."""
    torch.set_num_threads(cpu_threads())
    tokenizer = AutoTokenizer.from_pretrained(adapter or base)  # the adapter carries the tokenizer it was trained with
    tokenizer.padding_side = "left"  # generation appends on the right, so every row's prompt must end there
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()  # merged in fp32, then cast once
    return model.to(cpu_dtype()).eval(), tokenizer


class RowSampler(LogitsProcessor):
    """Top-k, top-p sampling at a temperature by the Gumbel-max trick, one seeded generator per row.

    Returns scores that are 0 at the sampled token and -inf elsewhere, so greedy decoding takes the sample. What
    a row draws depends on its own seed only, not on the rows it is batched with (`do_sample` would share one
    generator across the batch).
    """

    def __init__(self, seeds: np.ndarray, temperature: float = TEMPERATURE, top_k: int = TOP_K, top_p: float = TOP_P):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        top, token = scores.float().topk(self.top_k, dim=-1)  # (B, k), likeliest first
        top = top / self.temperature
        probs = top.softmax(dim=-1)
        top = top.masked_fill(probs.cumsum(dim=-1) - probs > self.top_p, float("-inf"))  # past the nucleus
        u = torch.stack([torch.rand(self.top_k, generator=g) for g in self.generators]).clamp(1e-10, 1 - 1e-10)
        pick = (top - torch.log(-torch.log(u))).argmax(dim=-1, keepdim=True)  # + Gumbel(0, 1): a sample, (B, 1)
        return torch.full_like(scores, float("-inf")).scatter_(1, token.gather(1, pick), 0.0)


def transformers_complete(model, tokenizer, prompts: list[str], seeds: np.ndarray,
                          batch_size: int = BATCH_SIZE, timeout_s: float = BATCH_TIMEOUT_S) -> list[str | None]:
    """One line per prompt, None where its batch raised or the row was unfinished when the batch timed out.

    Each batch holds prompts with the same rules (build_prompt's text before the customer record: the same for
    every customer with the same offer), so its rows share a long token prefix (two thirds of each prompt) that
    `_generate_batch` runs once.
    """
    ids = [tokenizer(chat_text(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    out: list[str | None] = [None] * len(prompts)
    for group in _groups([_rules(p) for p in prompts]):
        group = sorted(group, key=ids.__getitem__)  # similar records side by side: less padding
        for start in range(0, len(group), batch_size):
            rows = group[start:start + batch_size]
            try:
                texts = _generate_batch(model, tokenizer, [ids[i] for i in rows], seeds[rows], timeout_s)
            except RuntimeError as err:  # torch's errors (memory, shapes): this batch fails, the run goes on
                log.warning("generation batch of %d failed: %s", len(rows), err)
                continue
            for i, text in zip(rows, texts):
                out[i] = text
    return out


def _rules(prompt: str) -> str:
    """A build_prompt prompt's text before the customer record ("" for another prompt)."""
    head, tag, _ = prompt.partition(RECORD_TAG)
    return head if tag else ""


def _groups(keys: list[str]) -> list[list[int]]:
    """Positions of each distinct key, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _generate_batch(model, tokenizer, ids: list[list[int]], seeds: np.ndarray, timeout_s: float) -> list[str | None]:
    """Sample a reply to each tokenised chat: their common prefix through the model once, its KV cache repeated to
    every row, then each row's own rest (left-padded after the prefix) and the new tokens.

    The padding sits between prefix and rest; generate() numbers positions from the attention mask, so a row's
    tokens get the positions they would have unpadded (the same greedy text as without the cache).
    """
    prefix = _common_prefix(ids)
    rest = max(len(x) for x in ids) - prefix
    input_ids = torch.full((len(ids), prefix + rest), tokenizer.pad_token_id)  # (B, P + R)
    mask = torch.zeros_like(input_ids)
    for row, x in enumerate(ids):
        at = prefix + rest - (len(x) - prefix)  # where this row's own rest starts, after its padding
        input_ids[row, :prefix], input_ids[row, at:] = torch.tensor(x[:prefix]), torch.tensor(x[prefix:])
        mask[row, :prefix] = mask[row, at:] = 1
    start = time.monotonic()
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        if prefix:
            model(input_ids=input_ids[:1, :prefix], past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache.batch_repeat_interleave(len(ids))
        out = model.generate(input_ids=input_ids, attention_mask=mask, past_key_values=cache,
                             max_new_tokens=MAX_NEW_TOKENS, do_sample=False, max_time=timeout_s,
                             logits_processor=LogitsProcessorList([RowSampler(seeds)]),
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    timed_out = time.monotonic() - start >= timeout_s
    new = out[:, input_ids.shape[1]:]  # (B, new tokens)
    finished = (new == tokenizer.eos_token_id).any(dim=1).tolist()
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    return [None if timed_out and not done else one_line(t) for t, done in zip(texts, finished)]


def _common_prefix(ids: list[list[int]]) -> int:
    """Length of the token prefix all rows share, short of each row's last token (every row keeps one to run)."""
    shortest = min(len(x) for x in ids) - 1
    for k in range(shortest):
        if any(x[k] != ids[0][k] for x in ids):
            return k
    return max(shortest, 0)


# vllm


def vllm_requests(seeds: np.ndarray, adapter: Path | None) -> tuple[list[dict], dict | None]:
    """The keyword arguments of each prompt's SamplingParams, and of the LoRARequest (None without an adapter)."""
    params = [dict(temperature=TEMPERATURE, top_k=TOP_K, top_p=TOP_P, max_tokens=MAX_NEW_TOKENS, seed=int(s))
              for s in seeds]
    lora = None if adapter is None else dict(lora_name="ppo_text", lora_int_id=1, lora_path=str(adapter))
    return params, lora


def load_vllm(base: str, adapter: Path | None):
    """(engine, adapter) for offline generation; vllm is imported here only, from the `gpu` extra."""
    try:
        from vllm import LLM
    except ImportError as err:
        raise ImportError("generator 'vllm' needs the vllm package: install the project's `gpu` extra "
                          "(pip install '.[gpu]') on a GPU machine, or use generator 'transformers'") from err
    rank = json.loads((adapter / ADAPTER_CONFIG).read_text())["r"] if adapter is not None else 8
    return LLM(model=base, enable_lora=adapter is not None, max_lora_rank=max(rank, 8), seed=0), adapter


def vllm_complete(engine, adapter: Path | None, prompts: list[str], seeds: np.ndarray) -> list[str | None]:
    """One line per prompt from one offline batch (vLLM schedules and pads it), the adapter on every request."""
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    params, lora = vllm_requests(seeds, adapter)
    tokenizer = engine.get_tokenizer()
    outputs = engine.generate([chat_text(tokenizer, p) for p in prompts], [SamplingParams(**p) for p in params],
                              lora_request=None if lora is None else LoRARequest(**lora))
    return [one_line(o.outputs[0].text) if o.outputs and o.finished else None for o in outputs]


# best-of-n, with a second round for contacts none of whose candidates passed


def llm_messages(rows: pd.DataFrame, ds: str, backend: Backend, batch: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(message, generator) of the contacted `rows`: per contact the best of `backend.best_of_n` candidates the
    shield would accept (checked against the whole `batch`); a contact with none gets a second round with new
    seeds, and "<backend>_retry" marks what that round produced.

    Rows that fail both rounds keep their last first candidate (null after an error) for the shield to replace by
    the template.
    """
    prompts = [build_prompt(row, pct, backend.brand) for row, pct in zip(rows.to_dict("records"), rows["offer_pct"])]
    message = pd.Series(pd.NA, index=rows.index, dtype="str")
    generator = pd.Series(backend.name, index=rows.index, dtype="str")
    todo = np.arange(len(rows))
    for attempt in range(ATTEMPTS):
        if not todo.size:
            break
        text, passed = best_of_n(rows.iloc[todo], [prompts[i] for i in todo], ds, attempt, backend, batch)
        message.iloc[todo] = text
        generator.iloc[todo] = backend.name if attempt == 0 else f"{backend.name}_retry"
        todo = todo[~passed]
        log.info("%s round %d: %d of %d contacts need another round", backend.name, attempt + 1, len(todo), len(rows))
    return message, generator


def best_of_n(rows: pd.DataFrame, prompts: list[str], ds: str, attempt: int, backend: Backend,
              batch: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(text, passed) per row: the best passing of n candidates (their first where none passes), and whether
    one passed. Candidate k of round a is sampled with seed index a * n + k: with n = 1, one seed per round."""
    n, m = backend.best_of_n, len(rows)
    seeds = np.concatenate([row_seeds(rows["customer_id"], ds, attempt * n + k) for k in range(n)])
    started = time.perf_counter()
    text = np.array(backend.complete(prompts * n, seeds), dtype=object).reshape(n, m)  # (n, m), candidate-major
    sampled = time.perf_counter()
    repeated = rows.iloc[np.tile(np.arange(m), n)].reset_index(drop=True)
    ok = shield.acceptable(repeated, pd.Series(text.ravel(), dtype="str"), batch, backend.brand,
                           backend.language).reshape(n, m)
    score = np.where(ok, 0.0, -np.inf)  # without a reward model: the first passing candidate (argmax takes the first)
    if backend.score is not None and ok.any():
        k, j = np.nonzero(ok)
        score[k, j] = backend.score([prompts[i] for i in j], text[k, j].tolist())
    chosen = score.argmax(axis=0)  # (m,); 0 where none passed
    passed = ok.any(axis=0)
    picked = score[chosen, np.arange(m)][passed]
    log.info("best-of-%d round %d: %d of %d candidates passed the shield, %d of %d contacts have one; chosen %s; "
             "%.1f s sampling (%.2f candidates/s), %.1f s choosing", n, attempt + 1, ok.sum(), n * m, passed.sum(), m,
             f"reward mean {picked.mean():.3f} (min {picked.min():.3f}, max {picked.max():.3f})"
             if backend.score is not None and passed.any() else "the first passing",
             sampled - started, n * m / max(sampled - started, 1e-9), time.perf_counter() - sampled)
    return text[chosen, np.arange(m)], passed

