"""Smoke tests of the RLHF stages in TRL's style, on a tiny Llama (2 layers, width 32) with SmolLM2's tokenizer.

Each trainer: a loss was logged, every trainable parameter changed, and with LoRA the base weights did not. The
reward loss equals a hand computation. The three entry points run end to end with the tiny profile.
"""
import json
import math

import pytest
import torch
from peft import get_peft_model
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, LlamaConfig,
                          LlamaForCausalLM)

from retention.infra.artifacts import read_metrics
from retention.config import Config
from retention.messages.base_model import GGUF_FILE, PAD_TOKEN, gguf_dir
from retention.rlhf.evaluate import GATE_KEYS, gate, summarise
from retention.rlhf.ppo_text import PPOConfig, train
from retention.rlhf.reward import (RewardParams, bradley_terry_loss, load_reward, make_reward_trainer,
                                   tokenize_pairs)
from retention.rlhf.sft import (POLICY, REFERENCE, SFTParams, load_policy, lora_config, make_sft_trainer, sample,
                                save_adapter)
from training import train_ppo_text, train_reward, train_sft

DATA = Config().data_dir


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    """A randomly initialised 2-layer Llama saved like the converted base, with SmolLM2's tokenizer and template."""
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir(), gguf_file=GGUF_FILE)
    tokenizer.pad_token = PAD_TOKEN
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path = tmp_path_factory.mktemp("tiny_base")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def chat(prompt, reply):
    return {"prompt": [{"role": "user", "content": prompt}], "completion": [{"role": "assistant", "content": reply}]}


def pair(prompt, chosen, rejected):
    return {"source": "retention", "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


ROWS = [chat("Write a message for Ana, 10% off.", "Hi Ana, here is 10% off your monthly bill for 12 months."),
        chat("Write a message for Liam, no offer.", "Hello Liam, how is your service going? We are here to help."),
        chat("What is 2 + 2?", "2 + 2 is 4."),
        chat("Name a colour.", "Blue.")]
PAIRS = [pair("Message for Ana, 10% off.", "Hi Ana, enjoy 10% off for 12 months.", "Act now Ana! 50% off!"),
         pair("Message for Liam, no offer.", "Hello Liam, how is your service going?", "Hurry, last chance."),
         pair("Message for Zoey, 5% off.", "Hi Zoey, here is 5% off your bill.", "Hi there, 5% off."),
         pair("Message for Omar, 15% off.", "Omar, thanks! 15% off for a year.", "Omar, you have won!")]


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def assert_only_trainable_changed(model, before: dict[str, torch.Tensor]) -> None:
    """Every trainable parameter moved; every frozen one (the base, any other adapter) did not."""
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert not torch.equal(before[name], param.detach()), f"{name} did not change"
        else:
            assert torch.equal(before[name], param.detach()), f"frozen {name} changed"


def test_sft_trainer_trains_the_lora_adapter_only(tiny_base, tmp_path):
    params = SFTParams(steps=3, batch_size=2, learning_rate=1e-3, max_length=256, retention_share=0.5, eval_size=2,
                       bf16=False)
    trainer = make_sft_trainer(tiny_base, ROWS, ROWS[:2], params, seed=0, output_dir=str(tmp_path))
    before = snapshot(trainer.model)
    trainer.train()
    assert any("loss" in h for h in trainer.state.log_history)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert_only_trainable_changed(trainer.model, before)


def test_bradley_terry_loss_by_hand():
    got = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert got.item() == pytest.approx((math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2)


def test_reward_trainer_loss_equals_hand_computation_and_trains_lora_and_head_only(tiny_base, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    pairs = tokenize_pairs(PAIRS, tokenizer, max_length=512)
    params = RewardParams(steps=3, batch_size=2, learning_rate=1e-3, max_length=512, mix={}, eval_size=0, bf16=False)
    trainer = make_reward_trainer(tiny_base, pairs, params, seed=0, output_dir=str(tmp_path))
    model = trainer.model.eval()  # no dropout: the hand computation must see the same network

    # the trainer's loss on a padded batch of two pairs == -log sigma(r_c - r_r), each reply scored on its own
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch)).item()
        r = [[model(input_ids=torch.tensor([p[side]])).logits.item() for side in ("chosen_ids", "rejected_ids")]
             for p in trainer.train_dataset.select(range(2))]
    by_hand = sum(-math.log(1 / (1 + math.exp(-(c - j)))) for c, j in r) / 2
    assert loss == pytest.approx(by_hand, rel=1e-4)

    model.train()
    before = snapshot(model)
    trainer.train()
    assert any("loss" in h for h in trainer.state.log_history)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("score" in n for n in trainable) and all("lora_" in n or "score" in n for n in trainable)
    assert_only_trainable_changed(model, before)


def fresh_adapters(tiny_base, tmp_path):
    """An untrained SFT adapter and reward model on the tiny base, saved as the stages save them."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    sft_dir, reward_dir = tmp_path / "sft", tmp_path / "reward"
    save_adapter(get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_base), lora_config("CAUSAL_LM")),
                 tokenizer, sft_dir, tiny_base)
    classifier = AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=1)
    save_adapter(get_peft_model(classifier, lora_config("SEQ_CLS")), tokenizer, reward_dir, tiny_base)
    return sft_dir, reward_dir


PROMPTS = [{"customer_id": f"c{i}", "prompt": f"Write a message for {n}.", "name": n, "pct_text": pct,
            "channel": "sms"} for i, (n, pct) in enumerate([("Ana", "10%"), ("Liam", ""), ("Zoey", "5%"),
                                                             ("Omar", "15%")])]


def test_ppo_text_trains_the_policy_adapter_and_value_head_only(tiny_base, tmp_path):
    sft_dir, reward_dir = fresh_adapters(tiny_base, tmp_path)
    model, tokenizer = load_policy(sft_dir, tmp_path, tiny_base, is_trainable=True)
    model.load_adapter(str(sft_dir), adapter_name=REFERENCE, is_trainable=False)
    model.set_adapter(POLICY)
    reward_model, reward_tokenizer = load_reward(reward_dir, tmp_path, tiny_base)
    before = snapshot(model)
    cfg = PPOConfig(steps=2, batch_size=2, minibatch_size=1, update_epochs=1, learning_rate=1e-2, max_new_tokens=6,
                    kl_horizon=4, bf16=False)
    agent, history = train(cfg, model, tokenizer, reward_model, reward_tokenizer, PROMPTS)

    assert [h["step"] for h in history] == [1, 2]
    assert all(math.isfinite(h[k]) for h in history for k in ("reward", "kl", "beta", "shield_pass_rate", "pg_loss"))
    assert history[0]["kl"] == 0.0  # the policy starts as the reference
    assert history[1]["beta"] < history[0]["beta"] == cfg.init_kl_coef  # KL below target: beta shrinks
    for name, param in model.named_parameters():
        if f"lora_A.{POLICY}" in name or f"lora_B.{POLICY}" in name:
            assert not torch.equal(before[name], param.detach()), f"{name} did not change"
        else:  # the base and the SFT reference adapter
            assert torch.equal(before[name], param.detach()), f"frozen {name} changed"
    assert agent.value_head.weight.abs().sum() > 0  # zero-initialised, so it moved


def comparison(ppo_score, sft_score, ppo_judge, sft_judge, kl, ppo_failed=(), sft_failed=()):
    return {"ppo_score": ppo_score, "sft_score": sft_score, "ppo_judge": ppo_judge, "sft_judge": sft_judge, "kl": kl,
            "ppo_failed": list(ppo_failed), "sft_failed": list(sft_failed), "ppo": "x" * 60, "sft": "y" * 40}


def test_gate_rules_and_both_judges():
    rows = [comparison(1.0, 0.0, 2.0, 1.0, 2.0, sft_failed=["name"]),  # both judges: PPO
            comparison(0.5, 0.5, 0.0, 1.0, 4.0),  # RM: tie; judge: SFT
            comparison(2.0, 0.0, 1.0, 0.0, 0.0, ppo_failed=["proper_nouns"]),  # RM: PPO; the judge: ungrounded loses
            comparison(0.0, 1.0, 0.0, 1.0, 2.0, ["numbers"], ["dates"])]  # RM: SFT; judge: both ungrounded, a tie
    m = summarise(rows, kl_target=6.0)
    assert (m["win_rate"], m["rm_win_rate"], m["agreement"]) == ((1 + 0 + 0 + 0.5) / 4, (1 + 0.5 + 1 + 0) / 4, 0.25)
    assert (m["kl"], m["shield_pass_rate"], m["sft_shield_pass_rate"], m["mean_length"]) == (2.0, 0.5, 0.5, 60.0)
    assert (m["grounded_rate"], m["sft_grounded_rate"]) == (0.5, 0.75)
    assert not gate(m)["passed"]  # the judge's win rate is 0.375, whatever the RM says
    good = m | {"win_rate": 0.75}
    assert gate(good)["passed"]
    assert not gate(good | {"kl": 6.5})["passed"]
    assert not gate(good | {"win_rate": 0.5})["passed"]
    assert not gate(good | {"shield_pass_rate": 0.4})["passed"]


def only_version(root, name):
    (version,) = [p for p in (root / "models" / name).iterdir() if p.name != "champion"]
    return version


def test_entry_points_tiny_profile(tiny_base, tmp_path):
    args = ["--artifact-root", str(tmp_path), "--data-dir", DATA, "--base-model", tiny_base, "--profile", "tiny",
            "--no-promote"]
    assert train_sft.main(args) == 0
    assert train_reward.main(args) == 0
    assert train_reward.main(args + ["--judge"]) == 0
    sft_dir, reward_dir = only_version(tmp_path, "sft"), only_version(tmp_path, "reward")
    judge_dir = only_version(tmp_path, "judge")
    assert train_ppo_text.main(args + ["--sft-dir", str(sft_dir), "--reward-dir", str(reward_dir),
                                       "--judge-dir", str(judge_dir)]) == 0
    ppo_dir = only_version(tmp_path, "ppo_text")
    assert not (tmp_path / "models" / "ppo_text" / "champion").exists()  # --no-promote

    adapter = {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "metrics.json"}
    assert adapter | {"loss.png"} <= {p.name for p in sft_dir.iterdir()}
    assert adapter | {"loss.png"} <= {p.name for p in reward_dir.iterdir()}
    assert adapter | {"learning_curve.png", "samples.md"} <= {p.name for p in ppo_dir.iterdir()}
    assert json.loads((ppo_dir / "adapter_config.json").read_text())["r"] == 16
    assert not list(ppo_dir.glob("**/model.safetensors"))  # never the base weights

    assert read_metrics(sft_dir)["train_loss"] > 0 and read_metrics(sft_dir)["rows"]["retention"] > 0
    m = read_metrics(reward_dir)
    assert 0 <= m["hh_harmless_accuracy"] <= 1 and 0 <= m["retention_accuracy"] <= 1
    judge = read_metrics(judge_dir)
    assert (judge["model"], judge["seed"]) == ("judge", m["seed"] + 1)
    m = read_metrics(ppo_dir)
    assert set(GATE_KEYS) <= set(m) and len(m["history"]) == 2 and m["sft_version"] == sft_dir.name
    assert m["judge_version"] == judge_dir.name and "win rate (judge)" in m["gate_table"]
    assert set(m["history"][0]) >= {"reward", "kl", "beta", "shield_pass_rate"}
    assert (ppo_dir / "samples.md").read_text().count("\n| ") == 4 + 1  # header + 4 held-out prompts (tiny)
    assert "judge" in (ppo_dir / "samples.md").read_text()
    assert list((tmp_path / "data" / "rlhf").glob("*/prompts_test.jsonl"))

    # the generator's contract: adapter + tokenizer in the directory, base resolved from the config
    model, tokenizer = load_policy(ppo_dir, tmp_path, tiny_base)
    out = sample(model, tokenizer, ["Write a message for Ana."], max_new_tokens=4)
    assert len(out.texts) == 1 and out.response_mask.shape == (1, out.ids.shape[1] - out.prompt_len)
