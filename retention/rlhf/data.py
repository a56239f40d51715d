"""RLHF data: SFT pairs, preference pairs and retention prompts, split 80/10/10 (seed 42) and written as JSONL.

Sources (all under the data dir, see shared/data/README.md): OASST1 English validation messages (prompter -> assistant
pairs from the message tree, and ranked sibling replies as preference pairs), HH-RLHF harmless-base test pairs, the
SHP-format HH helpful pairs, and the project's own retention prompts built from IBM Telco customers with the
generator's prompt builder. Good and bad retention messages are data (retention_messages.jsonl beside this file).

Records use TRL's conversational formats: SFT rows are prompt-completion ({"prompt": [messages],
"completion": [assistant message]}), preference rows are {"prompt": [messages], "chosen": [...], "rejected": [...]}.
"""
from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from retention.config import Config
from retention.messages.prompt import build_prompt, clean_name, format_pct
from retention.datasets.seed import customers_from_telco
from retention.datasets.telco import read_telco

OASST_FILE = "oasst1_validation_en.messages.jsonl.gz"
HH_HARMLESS_FILE = "hh-rlhf_harmless-base_test.jsonl.gz"
SHP_HELPFUL_FILE = "hh-rlhf_helpful_test_shp-format.jsonl.gz"
MESSAGES_FILE = Path(__file__).with_name("retention_messages.jsonl")
SPLITS = ("train", "validation", "test")
SPLIT_SEED = 42
PROMPT_DAY = dt.date(2026, 1, 1)
"""Snapshot date for the retention prompts' customers; names and channels do not depend on it."""
OFFER_PCTS = Config().offer_pcts
"""Offer levels 0-3, as in the default Config."""
PROFILE_CUSTOMERS = {"tiny": 100, "quick": 1000, "full": 0}
"""Telco customers turned into retention records per training profile (0: all 7,043), the same for all three stages."""
VERSION = 2
"""Bumped when the records change, so a stale cache under the artifact root is rebuilt."""


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a .jsonl or .jsonl.gz file."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _msg(role: str, content: str) -> dict:
    return {"role": role, "content": content.strip()}


# OASST1: the message tree


def _thread(message: dict, by_id: dict[str, dict]) -> list[dict] | None:
    """The conversation from the tree's root down to `message`, as chat messages; None when a parent is missing."""
    path = [message]
    while path[-1]["parent_id"] is not None:
        parent = by_id.get(path[-1]["parent_id"])
        if parent is None:  # its parent was not English, so it was dropped from the file
            return None
        path.append(parent)
    return [_msg("user" if m["role"] == "prompter" else "assistant", m["text"]) for m in reversed(path)]


def oasst_sft(messages: list[dict]) -> list[dict]:
    """(prompter thread -> best assistant reply) pairs: each prompter message with its rank-0 (or only) reply."""
    by_id = {m["message_id"]: m for m in messages}
    rows = []
    for m in messages:
        parent = by_id.get(m["parent_id"] or "")
        if m["role"] != "assistant" or parent is None or m["rank"] not in (0, None):
            continue
        prompt = _thread(parent, by_id)
        if prompt is not None:
            rows.append({"source": "oasst", "group": m["message_tree_id"], "prompt": prompt,
                         "completion": [_msg("assistant", m["text"])]})
    return rows


def oasst_ranked_pairs(messages: list[dict]) -> list[dict]:
    """Every (better, worse) pair of ranked sibling replies to the same prompter message."""
    by_id = {m["message_id"]: m for m in messages}
    replies: dict[str, list[dict]] = {}
    for m in messages:
        if m["role"] == "assistant" and m["rank"] is not None and m["parent_id"] in by_id:
            replies.setdefault(m["parent_id"], []).append(m)
    rows = []
    for parent_id, sibs in replies.items():
        prompt = _thread(by_id[parent_id], by_id)
        sibs = sorted(sibs, key=lambda m: m["rank"])
        for i, better in enumerate(sibs):
            for worse in sibs[i + 1:]:
                if prompt is not None and better["rank"] < worse["rank"]:
                    rows.append(_pair("oasst_ranked", better["message_tree_id"], prompt, better["text"], worse["text"]))
    return rows


def _pair(source: str, group: str, prompt: list[dict], chosen: str, rejected: str) -> dict:
    return {"source": source, "group": group, "prompt": prompt,
            "chosen": [_msg("assistant", chosen)], "rejected": [_msg("assistant", rejected)]}


# HH-RLHF harmless and the SHP-format helpful pairs

_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")
_SHP_TURN = re.compile(r"(?:^|\n)(HUMAN|ASSISTANT): ")


def _turns(text: str, pattern: re.Pattern) -> list[dict]:
    """Split "<sep>Human: ...<sep>Assistant: ..." text into chat messages."""
    parts = pattern.split(text)[1:]  # [speaker, text, speaker, text, ...]
    return [_msg("user" if who.lower() == "human" else "assistant", said) for who, said in zip(parts[::2], parts[1::2])]


def hh_pairs(rows: list[dict]) -> list[dict]:
    """HH-RLHF {chosen, rejected} dialogues -> the shared prompt and the two final assistant replies."""
    out = []
    for i, row in enumerate(rows):
        chosen, rejected = _turns(row["chosen"], _HH_TURN), _turns(row["rejected"], _HH_TURN)
        if len(chosen) < 2 or chosen[:-1] != rejected[:-1] or chosen[-1]["role"] != "assistant":
            continue  # the two dialogues must differ only in the last reply
        if chosen[-1]["content"] != rejected[-1]["content"]:
            out.append(_pair("hh_harmless", f"hh-{i}", chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]))
    return out


def shp_pairs(rows: list[dict]) -> list[dict]:
    """SHP-schema rows (history, human_ref_A/B, labels: 1 means A is preferred) -> preference pairs."""
    out = []
    for row in rows:
        prompt = _turns(row["history"], _SHP_TURN)
        if not prompt or prompt[-1]["role"] != "user":
            continue
        a, b = row["human_ref_A"], row["human_ref_B"]
        chosen, rejected = (a, b) if row["labels"] == 1 else (b, a)
        out.append(_pair("shp_helpful", row["post_id"], prompt, chosen, rejected))
    return out


# retention prompts, messages and pairs


def reason_codes(customers: pd.DataFrame, rng: np.random.Generator) -> list[list[str]]:
    """Up to three plausible churn drivers per customer, in the risk model's reason-code vocabulary."""
    facts = pd.DataFrame({
        "contract": "contract=" + customers["contract"].astype(str),
        "tenure": np.where(customers["tenure_months"] < 24, "tenure_months", ""),
        "payment": "payment_method=" + customers["payment_method"].astype(str),
        "plan": np.where(customers["plan"] == "fiber_optic", "plan=fiber_optic", ""),
        "support": np.where(~customers["tech_support"].astype(bool), "tech_support=no", ""),
        "charges": np.where(customers["monthly_charges"] > 70, "monthly_charges", ""),
    })
    codes = []
    for row, k in zip(facts.to_numpy(), rng.integers(1, 4, len(facts))):
        present = [c for c in row if c]
        codes.append([present[i] for i in sorted(rng.permutation(len(present))[:k])])
    return codes


def retention_prompts(customers: pd.DataFrame, seed: int) -> list[dict]:
    """One prompt per customer with an offer level 0-3 drawn by `seed`, plus what the shield checks against (the
    name, the offer, and the tenure and charges the prompt states)."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, len(OFFER_PCTS), len(customers))
    codes = reason_codes(customers, rng)
    names = clean_name(customers["name"]).to_numpy()
    rows = []
    for (_, c), level, code, name in zip(customers.iterrows(), levels, codes, names):
        pct = OFFER_PCTS[level]
        rows.append({"customer_id": c["customer_id"], "name": name, "channel": c["channel"],
                     "offer_level": int(level), "offer_pct": pct, "pct_text": format_pct(pct) if pct > 0 else "",
                     "tenure_months": int(c["tenure_months"]), "monthly_charges": float(c["monthly_charges"]),
                     "prompt": build_prompt(c.to_dict() | {"reason_codes": code}, pct)})
    return rows


def read_messages(path: str | Path = MESSAGES_FILE) -> list[dict]:
    """The good and bad retention message templates ({name}, {pct} and {other} slots)."""
    return read_jsonl(path)


def fill(text: str, name: str, pct_text: str, other: str) -> str:
    """A message template with its slots filled."""
    return text.replace("{name}", name).replace("{pct}", pct_text).replace("{other}", other)


def _good_for(messages: list[dict], prompt: dict) -> list[dict]:
    """Good messages for the prompt's offer (discount or check-in) written for any channel or for its own."""
    offer = "discount" if prompt["pct_text"] else "check_in"
    return [m for m in messages
            if m["kind"] == "good" and m["offer"] == offer and m["channel"] in ("any", prompt["channel"])]


def retention_sft(prompts: list[dict], messages: list[dict], seed: int) -> list[dict]:
    """Each retention prompt with a good message for its offer and channel as the completion."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in prompts:
        good = _good_for(messages, p)
        text = fill(good[rng.integers(len(good))]["text"], p["name"], p["pct_text"], "")
        rows.append({"source": "retention", "group": p["customer_id"], "prompt": [_msg("user", p["prompt"])],
                     "completion": [_msg("assistant", text)]})
    return rows


def retention_pairs(prompts: list[dict], messages: list[dict], seed: int) -> list[dict]:
    """Each retention prompt with a good message (chosen) against a bad or wrong-offer one (rejected)."""
    rng = np.random.default_rng(seed)
    names = [p["name"] for p in prompts]
    rows = []
    for p in prompts:
        offer = "discount" if p["pct_text"] else "check_in"
        good = _good_for(messages, p)
        # rejected: a bad message for this offer, or a good one for the other offer (a discount nobody decided)
        worse = [m for m in messages if (m["kind"] == "bad" and m["offer"] == offer)
                 or (m["kind"] == "good" and m["offer"] != offer)]
        other = names[rng.integers(len(names))]
        other = other if other != p["name"] else "Alex"
        pct = p["pct_text"] or "10%"  # a check-in prompt's wrong-offer negatives name some discount
        chosen = fill(good[rng.integers(len(good))]["text"], p["name"], p["pct_text"], other)
        rejected = fill(worse[rng.integers(len(worse))]["text"], p["name"], pct, other)
        rows.append(_pair("retention", p["customer_id"], [_msg("user", p["prompt"])], chosen, rejected))
    return rows


# splits and files


def split_groups(groups: list[str], seed: int = SPLIT_SEED) -> dict[str, str]:
    """Distinct group keys -> train/validation/test, 80/10/10 by a seeded permutation (a group never straddles)."""
    keys = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(keys))
    n_train, n_val = int(round(0.8 * len(keys))), int(round(0.1 * len(keys)))
    names = ["train"] * n_train + ["validation"] * n_val + ["test"] * (len(keys) - n_train - n_val)
    return {keys[i]: names[j] for j, i in enumerate(order)}


def split_rows(rows: list[dict], key: str, seed: int = SPLIT_SEED) -> dict[str, list[dict]]:
    """Rows split 80/10/10 by their `key` field."""
    where = split_groups([r[key] for r in rows], seed)
    return {s: [r for r in rows if where[r[key]] == s] for s in SPLITS}


def build(data_dir: str | Path, seed: int = SPLIT_SEED, customers: int = 0) -> dict[str, dict[str, list[dict]]]:
    """Every record set, split: {"sft": {...}, "pairs": {...}, "prompts": {...}}.

    `customers` > 0 draws that many Telco customers (seeded) for the retention records instead of all 7,043:
    the prompt builder takes ~5 ms a row, and the quick profile trains on a few hundred of them.
    """
    data_dir = Path(data_dir)
    oasst = read_jsonl(data_dir / OASST_FILE)
    people = customers_from_telco(read_telco(data_dir), PROMPT_DAY)
    if 0 < customers < len(people):
        people = people.sample(n=customers, random_state=seed).sort_index()
    prompts = retention_prompts(people, seed)
    messages = read_messages()
    sft = oasst_sft(oasst) + retention_sft(prompts, messages, seed)
    pairs = (hh_pairs(read_jsonl(data_dir / HH_HARMLESS_FILE)) + shp_pairs(read_jsonl(data_dir / SHP_HELPFUL_FILE))
             + oasst_ranked_pairs(oasst) + retention_pairs(prompts, messages, seed))
    customer_split = split_groups([p["customer_id"] for p in prompts], seed)
    return {"sft": split_rows(sft, "group", seed), "pairs": split_rows(pairs, "group", seed),
            "prompts": {s: [p for p in prompts if customer_split[p["customer_id"]] == s] for s in SPLITS}}


def data_root(artifact_root: str | Path) -> Path:
    """`<artifact root>/data/rlhf`."""
    return Path(str(artifact_root).removeprefix("file://")) / "data" / "rlhf"


def ensure(artifact_root: str | Path, data_dir: str | Path, seed: int = SPLIT_SEED, customers: int = 0) -> Path:
    """Build and write the JSONL files once per (version, seed, customers); return their folder.

    Written to a temporary folder and renamed into place, so two stages starting together (SFT and the reward
    model run in parallel) never read a half-written file; the slower one discards its copy.
    """
    target = data_root(artifact_root) / f"v{VERSION}-seed{seed}-customers{customers or 'all'}"
    if (target / "manifest.json").exists():
        return target
    tmp = target.with_name(f".{target.name}-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    counts = {}
    for kind, splits in build(data_dir, seed, customers).items():
        for split, rows in splits.items():
            write_jsonl(tmp / f"{kind}_{split}.jsonl", rows)
            counts[f"{kind}_{split}"] = len(rows)
    manifest = {"version": VERSION, "seed": seed, "customers": customers or "all", "rows": counts}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    try:
        tmp.rename(target)
    except OSError:  # another stage finished first: its files are the same
        shutil.rmtree(tmp)
    return target


def unseen(rows: list[dict], folder: Path) -> list[dict]:
    """The rows whose group the record set in `folder` uses for neither training nor testing: no pair of its
    train or test split, no customer of its held-out prompts. The PPO-text gate's judge trains on these, built with
    another seed, so it never sees the reward model's training pairs nor the prompts it judges."""
    seen = {r["group"] for split in ("train", "test") for r in load(folder, "pairs", split)}
    seen |= {p["customer_id"] for p in load(folder, "prompts", "test")}
    return [r for r in rows if r["group"] not in seen]


def load(folder: Path, kind: str, split: str, sources: tuple[str, ...] = ()) -> list[dict]:
    """One split of one record kind, optionally only some sources."""
    rows = read_jsonl(folder / f"{kind}_{split}.jsonl")
    return [r for r in rows if not sources or r["source"] in sources]
