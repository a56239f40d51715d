"""LLM backends: per-row seeded sampling, one-line replies, best-of-n and its second round, LoRA champions (the
policy and the reward model that picks among candidates), vLLM gating and requests.

The transformers path runs on a TINY randomly initialised Llama with the SmolLM2 tokenizer: it writes garbage,
which is the point (the shield must catch it and the template must take its place).
"""
import dataclasses
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from retention.config import REPO_ROOT, Config
from retention.messages import generate as generator
from retention.messages import llm
from retention.messages.prompt import build_prompt
from retention.messages.template import template_messages
from retention.messages.shield import evaluate, shield

DS = "2025-03-09"


def build_tiny(root: Path) -> Path:
    """A 1-layer, 16-wide Llama with SmolLM2's tokenizer and chat template, saved once per test session."""
    path = root / "tiny_llama"
    if (path / "config.json").exists():
        return path
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from retention.messages.base_model import GGUF_FILE, PAD_TOKEN, gguf_dir

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir(), gguf_file=GGUF_FILE)  # no weights: a few seconds
    tokenizer.pad_token = PAD_TOKEN
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    tmp = root / "tiny_llama.tmp"
    LlamaForCausalLM(config).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(path)
    return path


def customers(n: int, names=None) -> pd.DataFrame:
    """n contacted customers of every channel and offer level."""
    return pd.DataFrame({
        "customer_id": [f"{i:04d}-TEST" for i in range(n)], "name": names or ["Ann", "Bob", "Kim", "Lee"] * (n // 4),
        "channel": (["email", "sms", "phone", "app"] * n)[:n], "time_zone": "America/New_York",
        "tenure_months": 7, "plan": "fiber_optic", "contract": "month_to_month", "monthly_charges": 80.0,
        "reason_codes": [["contract=month_to_month", "tenure_months"]] * n,
        "offer_pct": ([0.0, 0.05, 0.10, 0.15] * n)[:n], "contact": True})


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.getbasetemp())


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One torch thread: a 16-wide model gains nothing from two, and on a shared machine each of its small ops
    would wait milliseconds for the other thread."""
    monkeypatch.setattr(llm, "cpu_threads", lambda: 1)


@pytest.fixture()
def short(monkeypatch):
    """Fewer new tokens: garbage is garbage at 12 tokens too, and the tests stay quick."""
    monkeypatch.setattr(llm, "MAX_NEW_TOKENS", 12)


@pytest.fixture()
def tiny_cfg(tiny, tmp_path) -> Config:
    llm.load_backend.cache_clear()
    yield Config(generator="transformers", base_model=str(tiny), artifact_root=str(tmp_path))
    llm.load_backend.cache_clear()


# sampling


def test_row_sampler_draws_inside_top_k_and_depends_on_its_seed_only():
    scores = torch.randn(3, 500, generator=torch.Generator().manual_seed(1))
    picks = [llm.RowSampler(np.array([7, 8, 9]), top_k=5)(None, scores) for _ in range(2)]
    assert torch.equal(picks[0], picks[1])  # deterministic
    chosen = picks[0].argmax(dim=1)
    assert all(c in scores[i].topk(5).indices for i, c in enumerate(chosen))
    assert (picks[0] == 0).sum(dim=1).tolist() == [1, 1, 1] and torch.isinf(picks[0]).sum() == 3 * 499
    # row 0 with seed 7 draws the same whoever shares its batch
    alone = llm.RowSampler(np.array([7]), top_k=5)(None, scores[:1])
    assert torch.equal(alone, picks[0][:1])


def test_row_sampler_follows_the_distribution():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    draws = [int(llm.RowSampler(np.array([s]), temperature=1.0, top_k=4, top_p=1.0)(None, scores).argmax())
             for s in range(3000)]
    share = np.bincount(draws, minlength=4) / 3000
    assert np.allclose(share, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    nucleus = {int(llm.RowSampler(np.array([s]), temperature=1.0, top_k=4, top_p=0.6)(None, scores).argmax())
               for s in range(300)}
    assert nucleus == {0, 1}  # 0.5 alone is short of 0.6; with 0.3 the nucleus is complete


def test_row_seeds_are_stable_and_differ_by_day_and_attempt():
    ids = pd.Series(["a", "b"])
    first = llm.row_seeds(ids, DS, 0)
    assert first.tolist() == llm.row_seeds(ids, DS, 0).tolist() and first.max() < 2**31
    assert (first != llm.row_seeds(ids, DS, 1)).all() and (first != llm.row_seeds(ids, "2025-03-10", 0)).all()


@pytest.mark.parametrize("raw, line", [
    ("  Hi Ann,\n\nhere is 10% off.\n", "Hi Ann, here is 10% off."),
    ('Message: "Hi Ann, thanks!"', "Hi Ann, thanks!"),
    ("assistant:\tHello", "Hello"),
    ("", ""),
])
def test_one_line(raw, line):
    assert llm.one_line(raw) == line


# the transformers backend on the tiny model


def test_tiny_transformers_is_deterministic_per_row(tiny, short):
    model, tokenizer = llm.load_transformers(str(tiny), None)
    assert tokenizer.padding_side == "left" and torch.get_num_threads() == llm.cpu_threads() == 1
    prompts = [build_prompt(r, p) for r, p in zip(customers(4).to_dict("records"), [0.0, 0.05, 0.1, 0.15])]
    seeds = np.array([11, 12, 13, 14])
    batch = llm.transformers_complete(model, tokenizer, prompts, seeds, batch_size=4)
    assert batch == llm.transformers_complete(model, tokenizer, prompts, seeds, batch_size=4)
    assert all(isinstance(t, str) and "\n" not in t for t in batch)
    # the same prompt and seed give the same text alone or beside another row (same length: same padding)
    alone = llm.transformers_complete(model, tokenizer, prompts[:1], seeds[:1])
    paired = llm.transformers_complete(model, tokenizer, [prompts[0], prompts[0]], np.array([11, 99]))
    assert alone[0] == batch[0] == paired[0] != paired[1]


def test_shared_prefix_is_run_once_and_changes_no_row(tiny, short, monkeypatch):
    """Rows with the same offer share the rules as a token prefix: it runs once for the batch, and each row (its
    record padded after the prefix) samples what it samples alone."""
    model, tokenizer = llm.load_transformers(str(tiny), None)
    names = ["Ann", "Bartholomew", "Kim", "Maria José"]
    prompts = [build_prompt(r, 0.1) for r in customers(4, names).to_dict("records")]
    seeds = np.array([5, 6, 7, 8])
    prefixes = []
    real = llm._common_prefix
    monkeypatch.setattr(llm, "_common_prefix", lambda ids: prefixes.append(real(ids)) or prefixes[-1])
    batch = llm.transformers_complete(model, tokenizer, prompts, seeds, batch_size=4)
    alone = [llm.transformers_complete(model, tokenizer, [p], s[None])[0] for p, s in zip(prompts, seeds)]
    assert batch == alone
    ids = tokenizer(llm.chat_text(tokenizer, prompts[0]), add_special_tokens=False)["input_ids"]
    assert 0.5 < prefixes[0] / len(ids) < 1  # the chat template and the rules, not the record


def test_common_prefix_leaves_every_row_a_token():
    assert llm._common_prefix([[1, 2, 3], [1, 2, 4, 5]]) == 2
    assert llm._common_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert llm._common_prefix([[7], [7, 8]]) == 0


def test_transformers_batch_error_is_a_failed_row_not_a_failed_run(tiny, short, monkeypatch):
    model, tokenizer = llm.load_transformers(str(tiny), None)
    calls = []

    def flaky(model, tokenizer, prompts, seeds, timeout_s):
        calls.append(len(prompts))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return ["ok"] * len(prompts)

    monkeypatch.setattr(llm, "_generate_batch", flaky)
    assert llm.transformers_complete(model, tokenizer, ["a", "b", "c"], np.arange(3), batch_size=2) == [
        None, None, "ok"]


def test_timed_out_batch_marks_unfinished_rows_failed(tiny, short):
    model, tokenizer = llm.load_transformers(str(tiny), None)
    out = llm.transformers_complete(model, tokenizer, ["hi", "there"], np.arange(2), timeout_s=1e-9)
    assert out == [None, None]  # the garbage model never says <|im_end|> within 12 tokens


def test_garbage_is_retried_then_left_to_the_shield_template(tiny_cfg, short):
    plan = customers(8)
    plan.loc[5, "contact"] = False
    out = generator.generate(plan, tiny_cfg, DS)
    contacted = out["contact"]
    assert out.loc[contacted, "generator"].eq("transformers_retry").all()  # every first attempt failed the checks
    assert out.loc[contacted, "message_model"].eq("base:tiny_llama").all()
    assert out.loc[~contacted, ["message", "generator", "message_model"]].isna().all().all()
    final = shield(out, tiny_cfg, DS)
    assert final.loc[contacted, "generator"].eq("template_fallback").all()
    assert final.loc[contacted, "message"].tolist() == template_messages(plan[contacted], DS).tolist()
    codes, _ = evaluate(final[contacted], final.loc[contacted, "message"], final)
    assert (codes["action"] == 0).all()


def test_retry_keeps_what_passes_and_marks_the_retry():
    plan = customers(4)
    good = template_messages(plan, DS).tolist()
    answers = iter([[good[0], "garbage", None, "spam spam"], [good[1], good[2], "still bad"]])
    seen = []

    def complete(prompts, seeds):
        seen.append((len(prompts), seeds.tolist()))
        return next(answers)

    message, gen = llm.llm_messages(plan, DS, llm.Backend("fake", "v1", complete), plan)
    assert gen.tolist() == ["fake", "fake_retry", "fake_retry", "fake_retry"]
    assert message.tolist()[:3] == good[:3] and message[3] == "still bad"
    assert seen[0][0] == 4 and seen[1][0] == 3
    assert seen[1][1] == llm.row_seeds(plan["customer_id"].iloc[1:], DS, 1).tolist()  # a new seed per retry


def test_llm_limit_gives_the_model_the_most_valuable_contacts(monkeypatch):
    plan = customers(8).assign(expected_value=[5.0, 9.0, 1.0, 9.0, 7.0, 0.5, 3.0, 2.0])
    plan.loc[4, "contact"] = False  # the 7.0 is not contacted: 9.0, 9.0 (ties by id) and 5.0 are the top three
    written = template_messages(plan, DS).str.replace(r"\.$", "!", regex=True)  # passes, and is told apart
    fake = llm.Backend("fake", "fake:v1", lambda prompts, seeds: written[[1, 3, 0]].tolist())
    monkeypatch.setattr(llm, "load_backend", lambda cfg: fake)
    out = generator.generate(plan, Config(generator="transformers"), DS, llm_limit=3)
    assert out["generator"].fillna("-").tolist() == [
        "fake", "fake", "template", "fake", "-", "template", "template", "template"]
    assert out["message_model"].tolist()[:4] == ["fake:v1", "fake:v1", "template", "fake:v1"]
    assert out.loc[[0, 1, 3], "message"].tolist() == written[[0, 1, 3]].tolist()
    assert out.loc[[2, 5], "message"].tolist() == template_messages(plan, DS)[[2, 5]].tolist()


def _candidates(plan: pd.DataFrame) -> list[list[str]]:
    """Three candidates per customer of `plan` (4 rows): [0] fails the shield for rows 0-2 (an invented company),
    [1] and [2] pass (template wordings told apart), and all three fail for row 3."""
    good = template_messages(plan, DS)
    bad = good.str.replace(",", ", from FiberToCiti,", n=1, regex=False)
    return [[*bad[:3], "x"], [*good.str.replace(r"\.$", "!", regex=True)[:3], "y"], [*good[:3], "z"]]


def test_best_of_n_keeps_the_highest_reward_among_passing_candidates(caplog):
    plan = customers(4)
    rounds = [_candidates(plan), [["still bad"]] * 3]
    seen = []

    def complete(prompts, seeds):
        seen.append(seeds.tolist())
        return sum(rounds[len(seen) - 1], [])  # candidate-major: n blocks of one text per prompt

    # the reward model prefers the failing candidate [0], then [2], except for row 1 where [1] wins
    rewards = {t: r for cand, r in zip(_candidates(plan), (9.0, 1.0, 2.0)) for t in cand}
    rewards[_candidates(plan)[1][1]] = 5.0
    scored = []

    def score(prompts, texts):
        scored.append(len(texts))
        return np.array([rewards[t] for t in texts])

    backend = llm.Backend("fake", "v1", complete, score=score, best_of_n=3)
    with caplog.at_level("INFO", logger=llm.__name__):
        message, gen = llm.llm_messages(plan, DS, backend, plan)
    cands = _candidates(plan)
    assert message.tolist() == [cands[2][0], cands[1][1], cands[2][2], "still bad"]
    assert gen.tolist() == ["fake", "fake", "fake", "fake_retry"]  # row 3: no candidate passed, a second round
    assert scored == [6]  # only passing candidates are scored (the second round had none)
    ids = plan["customer_id"]
    assert seen[0] == np.concatenate([llm.row_seeds(ids, DS, k) for k in range(3)]).tolist()
    assert seen[1] == np.concatenate([llm.row_seeds(ids.iloc[3:], DS, k) for k in range(3, 6)]).tolist()
    assert "best-of-3 round 1: 6 of 12 candidates passed the shield, 3 of 4 contacts have one; chosen reward " \
           "mean 3.000 (min 2.000, max 5.000)" in caplog.text


def test_best_of_n_without_a_reward_model_keeps_the_first_passing_candidate():
    plan = customers(4)
    backend = llm.Backend("fake", "v1", lambda prompts, seeds: sum(_candidates(plan), []), best_of_n=3)
    message, _ = llm.best_of_n(plan, ["p"] * 4, DS, 0, backend, plan)
    cands = _candidates(plan)
    assert message.tolist() == [cands[1][0], cands[1][1], cands[1][2], "x"]


def test_tiny_reward_champion_scores_and_picks_the_candidates(tiny, tiny_cfg):
    """The reward champion (LoRA + score head on the tiny base) is found by cfg.model_dir("reward") and picks
    the candidate it scores highest."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    cfg = dataclasses.replace(tiny_cfg, best_of_n=3)
    assert llm.load_scorer(cfg) is None  # no reward champion yet
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    base = AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=1)
    base.config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(1)
    peft = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"]))
    peft.save_pretrained(cfg.model_dir("reward"))
    tokenizer.save_pretrained(cfg.model_dir("reward"))
    scorer = llm.load_scorer(cfg)
    assert llm.load_scorer(dataclasses.replace(cfg, best_of_n=1)) is None  # one candidate: nothing to choose

    plan = customers(4)
    prompts = [build_prompt(r, p) for r, p in zip(plan.to_dict("records"), plan["offer_pct"])]
    cands = _candidates(plan)
    scores = np.array([scorer(prompts, list(c)) for c in cands])  # (3, 4)
    assert np.isfinite(scores).all() and np.array_equal(scores, [scorer(prompts, list(c)) for c in cands])
    backend = llm.Backend("fake", "v1", lambda p, s: sum(cands, []), score=scorer, best_of_n=3)
    message, passed = llm.best_of_n(plan, prompts, DS, 0, backend, plan)
    best = 1 + scores[1:, :3].argmax(axis=0)  # candidates 1 and 2 pass for rows 0-2
    assert message.tolist()[:3] == [cands[k][j] for j, k in enumerate(best)] and passed.tolist() == [True] * 3 + [False]
    llm.load_backend.cache_clear()
    loaded = llm.load_backend(cfg)
    assert loaded.score is not None and loaded.best_of_n == 3 and loaded.brand == "Northwind Mobile"


def test_prefix_cached_reward_scores_equal_the_trainers_scoring(tiny, tmp_path):
    """The generator's scorer (shared prefix cached, LoRA merged) gives the scores `reward.score` gives the
    unmerged model, row by row."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from retention.rlhf.reward import load_reward, score

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    base = AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=1)
    base.config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(2)
    peft = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    peft.save_pretrained(tmp_path / "reward")
    tokenizer.save_pretrained(tmp_path / "reward")
    model, tok = load_reward(tmp_path / "reward", tmp_path, str(tiny))
    plan = customers(8, ["Ann", "Bartholomew", "Kim", "Maria José"] * 2)
    prompts = [build_prompt(r, p) for r, p in zip(plan.to_dict("records"), plan["offer_pct"])]
    texts = [f"Hi {n}, thanks for being with us{'!' * i}" for i, n in enumerate(plan["name"])]
    expected = score(model, tok, [[{"role": "user", "content": p}] for p in prompts], texts).numpy()
    got = llm.reward_scores(model.merge_and_unload(), tok, prompts, texts)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_nobody_to_write_for_asks_the_backend_nothing():
    def complete(prompts, seeds):
        raise AssertionError("called")

    message, gen = llm.llm_messages(customers(4).head(0), DS, llm.Backend("fake", "v1", complete), customers(4))
    assert message.empty and gen.empty


# champions and versions


def test_lora_champion_is_merged_and_versioned(tiny, tmp_path, short):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = Config(generator="transformers", base_model=str(tiny), artifact_root=str(tmp_path))
    adapter = cfg.model_dir("ppo_text")
    base = AutoModelForCausalLM.from_pretrained(tiny)
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(adapter)
    (adapter / "metrics.json").write_text(json.dumps({"version": "20260101T000000Z-abc123"}))
    assert llm.champion_adapter(cfg) == adapter
    assert llm.model_version(str(tiny), adapter) == "ppo_text:20260101T000000Z-abc123"
    merged, _ = llm.load_transformers(str(tiny), adapter)
    plain, _ = llm.load_transformers(str(tiny), None)
    assert type(merged).__name__ == "LlamaForCausalLM"  # merged into plain weights, no PEFT wrapper left
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q], plain.state_dict()[q])


def test_threads_follow_the_cpu_affinity():
    import os

    assert 1 <= len(os.sched_getaffinity(0)) <= os.cpu_count()


def test_no_champion_means_the_base_model():
    cfg = Config(artifact_root="/nonexistent/root")
    assert llm.champion_adapter(cfg) is None
    assert llm.model_version("/models/base/smollm2-135m-instruct", None) == "base:smollm2-135m-instruct"


# vllm: imported only when chosen


def test_template_path_loads_no_torch_and_llm_path_no_vllm():
    code = ("import sys; from retention.config import Config; from retention.messages import generate, shield; "
            "assert 'torch' not in sys.modules; from retention.messages import llm; "
            "assert 'torch' in sys.modules and 'vllm' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_vllm_without_the_package_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what an environment without the gpu extra looks like
    with pytest.raises(ImportError, match=r"gpu.*extra"):
        llm.load_vllm("base", None)


def test_vllm_requests_carry_the_seed_and_the_adapter(tmp_path):
    params, lora = llm.vllm_requests(np.array([5, 6]), tmp_path)
    assert params == [dict(temperature=llm.TEMPERATURE, top_k=llm.TOP_K, top_p=llm.TOP_P,
                           max_tokens=llm.MAX_NEW_TOKENS, seed=s) for s in (5, 6)]
    assert lora == {"lora_name": "ppo_text", "lora_int_id": 1, "lora_path": str(tmp_path)}
    assert llm.vllm_requests(np.array([5]), None)[1] is None


def test_vllm_backend_builds_one_offline_batch(tiny, tmp_path, monkeypatch):
    """The real code path against a stand-in vllm module: engine, chat prompts, per-request seeds, LoRA."""
    made = {}

    class LLM:
        def __init__(self, **kw):
            made["engine"] = kw

        def get_tokenizer(self):
            from transformers import AutoTokenizer
            return AutoTokenizer.from_pretrained(tiny)

        def generate(self, prompts, params, lora_request=None):
            made.update(prompts=prompts, params=params, lora=lora_request)
            done = types.SimpleNamespace(outputs=[types.SimpleNamespace(text=" Hi there \n")], finished=True)
            cut = types.SimpleNamespace(outputs=[], finished=False)
            return [done, cut]

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = LLM, lambda **kw: kw
    lora_module = types.ModuleType("vllm.lora.request")
    lora_module.LoRARequest = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", lora_module)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / llm.ADAPTER_CONFIG).write_text(json.dumps({"r": 16}))

    engine, lora = llm.load_vllm("base-path", adapter)
    assert made["engine"] == {"model": "base-path", "enable_lora": True, "max_lora_rank": 16, "seed": 0}
    out = llm.vllm_complete(engine, lora, ["p1", "p2"], np.array([3, 4]))
    assert out == ["Hi there", None]
    assert made["prompts"][0].endswith("<|im_start|>user\np1<|im_end|>\n<|im_start|>assistant\n")
    assert [p["seed"] for p in made["params"]] == [3, 4]
    assert made["lora"] == {"lora_name": "ppo_text", "lora_int_id": 1, "lora_path": str(adapter)}


# one prompt, one template: the backends agree where they must


def test_backends_share_the_prompt_builder_and_template_path(tiny_cfg, short):
    plan = customers(4)
    template = generator.generate(plan, Config(), DS)
    assert template["generator"].eq("template").all() and template["message_model"].eq("template").all()
    # whatever the backend wrote, the shield's fallback is the same template, row for row
    llm_out = shield(generator.generate(plan, tiny_cfg, DS), tiny_cfg, DS)
    tmpl_out = shield(template, Config(), DS)
    assert llm_out["message"].tolist() == tmpl_out["message"].tolist()
    assert [json.loads(c)["action"] for c in tmpl_out["shield_checks"]] == ["none"] * 4
