"""Train the offer-acceptance model on UCI Bank Marketing, gate it, and promote it to champion when it passes.

Usage:
    .venv/bin/python -m training.train_accept --profile quick
    .venv/bin/python -m training.train_accept --profile full --seed 42 --artifact-root ./artifacts --no-promote

The scoring model sees only the columns that Bank Marketing and our customers share (retention/scoring/features.py
documents the mapping and the euribor3m offer-level proxy); `duration` is dropped everywhere because it is known
only after the call. A reference model on every bank column except `duration` is fitted the same way and its
AUC reported beside the scoring model's, to show what the mapping gives up. Same protocol as train_risk:
80/10/10 split for the saved model, gate on 5-fold out-of-fold predictions, which test_predictions.parquet holds.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from retention.scoring.accept import MONOTONE, AcceptModel
from retention.infra.artifacts import new_version, promote_if_passed, tabular_summary, version_dir, write_evaluation
from retention.scoring.calibration import CalibratedXGB, gate, metrics, out_of_fold, split_80_10_10
from retention.config import load_config
from retention.scoring.features import accept_features, bank_full_features, bank_mapped, bank_offer_level, read_bank

NAME = "accept"
MIN_AUC, MAX_ECE = 0.75, 0.015
"""Gate on out-of-fold predictions of the scoring (mapped-feature) model."""

PROFILES = {
    # depth 3 lets month, contact and offer level interact; depth 3-4 with min_child_weight 5-10 and subsample
    # 0.8-1 scored within 0.001 out-of-fold AUC of each other, so the simplest is kept
    "quick": dict(n_estimators=2000, learning_rate=0.05, max_depth=3, min_child_weight=5.0, early_stopping_rounds=100),
    "full": dict(n_estimators=8000, learning_rate=0.02, max_depth=3, min_child_weight=5.0, early_stopping_rounds=300),
    "tiny": dict(n_estimators=20, learning_rate=0.3, max_depth=3, min_child_weight=5.0, early_stopping_rounds=5),
}
"""Hyper-parameters per profile: quick is what `make demo` runs, tiny is for smoke tests."""

log = logging.getLogger("train_accept")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cfg = load_config()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact-root", default=cfg.artifact_root, help="models go to <root>/models/accept/<version>/")
    p.add_argument("--data-dir", default=cfg.data_dir, help="folder holding bank-additional-full.csv.gz")
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick", help="hyper-parameter budget")
    p.add_argument("--seed", type=int, default=42, help="split, CV and XGBoost seed")
    p.add_argument("--no-promote", action="store_true", help="only report: never touch the champion, exit 0")
    p.add_argument("--min-auc", type=float, default=MIN_AUC, help="gate: lowest out-of-fold AUC")
    p.add_argument("--max-ece", type=float, default=MAX_ECE, help="gate: highest out-of-fold ECE")
    return p.parse_args(argv)


def offer_level_report(level, y, edges: list[float]) -> dict:
    """How the euribor3m proxy was cut, and the acceptance rate and row count per level."""
    rates = {str(k): float(y[level == k].mean()) for k in range(4)}
    return {"proxy": "euribor3m quartile, reversed: the lowest-rate quartile is level 3",
            "euribor3m_edges": edges, "acceptance_rate": rates,
            "rows": {str(k): int((level == k).sum()) for k in range(4)},
            "rises_with_level": bool(np.all(np.diff(list(rates.values())) > 0))}


def reference_auc(X, y, params: dict, seed: int) -> dict:
    """AUC of the full-feature bank model (all columns but duration), fitted by the same protocol."""
    train, val, test = split_80_10_10(y, seed)
    ref = CalibratedXGB(**params, random_state=seed).fit(X.iloc[train], y[train], X.iloc[val], y[val])
    _, p_cal, _ = out_of_fold(CalibratedXGB(**params), X, y, seed)
    return {"features": X.shape[1], "oof_auc": float(roc_auc_score(y, p_cal)),
            "test_auc": float(roc_auc_score(y[test], ref.predict_proba(X.iloc[test])))}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started = time.perf_counter()
    params = dict(PROFILES[args.profile], monotone_constraints=MONOTONE)

    # data: mapped features (what scoring sees) and the offer-level proxy
    bank = read_bank(args.data_dir)
    y = bank["y"].eq("yes").to_numpy(dtype=int)
    level, edges = bank_offer_level(bank["euribor3m"])
    offers = offer_level_report(level.to_numpy(), y, edges)
    X = accept_features(bank_mapped(bank, level))
    log.info("Bank Marketing: %d rows, %d mapped features, acceptance %.3f", len(y), X.shape[1], y.mean())
    log.info("acceptance by offer level (euribor3m edges %s): %s", edges, offers["acceptance_rate"])

    # final model: 80 % train, 10 % early stopping + isotonic, 10 % test
    train, val, test = split_80_10_10(y, args.seed)
    model = AcceptModel(**params, random_state=args.seed)
    model.fit(X.iloc[train], y[train], X.iloc[val], y[val])
    test_m = metrics(y[test], model.predict_raw(X.iloc[test]), model.predict_proba(X.iloc[test]))
    log.info("final model: %d trees; 10%% test AUC %.4f ECE %.4f",
             model.best_iteration_ + 1, test_m["auc"], test_m["ece"])

    # gate: 5-fold out-of-fold predictions of every row
    p_raw, p_cal, trees = out_of_fold(AcceptModel(**params), X, y, args.seed)
    oof_m = metrics(y, p_raw, p_cal)
    verdict = gate(oof_m, args.min_auc, args.max_ece)
    log.info("out-of-fold: AUC %.4f (raw %.4f) ECE %.4f (raw %.4f) Brier %.4f; trees per fold %s",
             oof_m["auc"], oof_m["auc_raw"], oof_m["ece"], oof_m["ece_raw"], oof_m["brier"], trees)

    # reference: every bank column except duration (never used to score)
    reference = reference_auc(bank_full_features(bank), y, PROFILES[args.profile], args.seed)
    log.info("full-feature reference: OOF AUC %.4f, test AUC %.4f", reference["oof_auc"], reference["test_auc"])

    # save
    version = new_version()
    out = version_dir(args.artifact_root, NAME, version)
    model.save(out, version)
    report = {"model": NAME, "version": version, "profile": args.profile, "seed": args.seed, "params": params,
              "data": "UCI Bank Marketing (bank-additional-full), duration dropped",
              "rows": {"train": len(train), "validation": len(val), "test": len(test)},
              "trees": model.best_iteration_ + 1, "oof_trees": trees, "oof": oof_m, "test": test_m, "gate": verdict,
              "offer_level": offers, "full_feature_reference": reference,
              "test_predictions": "out-of-fold predictions of every row (5-fold CV); id is the bank row number",
              "seconds": round(time.perf_counter() - started, 1)}
    write_evaluation(out, report, np.arange(len(y)), y, p_raw, p_cal, model.importance())
    log.info("wrote %s (%.1f s)", out, report["seconds"])
    return promote_if_passed(args.artifact_root, NAME, version, verdict["passed"], tabular_summary(verdict),
                             args.no_promote)


if __name__ == "__main__":
    sys.exit(main())
