import pytest

from retention.config import Config, load_config


def test_defaults_match_design():
    cfg = load_config(env={})
    assert (cfg.daily_budget, cfg.fatigue_cap, cfg.fatigue_window_days, cfg.cooldown_days) == (5000.0, 3, 30, 7)
    assert (cfg.quiet_start_hour, cfg.quiet_end_hour, cfg.holdout_share) == (22, 8, 0.10)
    assert cfg.offer_pcts == (0.0, 0.05, 0.10, 0.15)
    assert cfg.bq_endpoint == "http://127.0.0.1:9050" and cfg.dataset == "retention"
    assert cfg.staging_dataset == "retention_staging"


def test_env_is_typed_and_params_win():
    env = {"RETENTION_DAILY_BUDGET": "1200.5", "RETENTION_FATIGUE_CAP": "2", "RETENTION_OFFER_PCTS": "0,0.1,0.2,0.3",
           "RETENTION_BQ_ENDPOINT": ""}
    cfg = load_config({"daily_budget": 99, "generator": None}, env=env)
    assert cfg.daily_budget == 99.0 and isinstance(cfg.daily_budget, float)
    assert cfg.fatigue_cap == 2 and cfg.offer_pcts == (0.0, 0.1, 0.2, 0.3)
    assert cfg.bq_endpoint == "" and not cfg.is_local_bq
    assert cfg.generator == "template"


def test_bad_values_name_the_field():
    with pytest.raises(ValueError, match="fatigue_cap='many'"):
        load_config(env={"RETENTION_FATIGUE_CAP": "many"})
    with pytest.raises(ValueError, match="generator='gpt'"):
        load_config({"generator": "gpt"}, env={})
    with pytest.raises(ValueError, match="offer_pcts"):
        load_config(env={"RETENTION_OFFER_PCTS": "0,0.5"})


def test_config_is_frozen_and_paths_derive(tmp_path):
    cfg = load_config(env={"RETENTION_ARTIFACT_ROOT": f"file://{tmp_path}"})
    with pytest.raises(AttributeError):
        cfg.daily_budget = 1  # type: ignore[misc]
    assert cfg.artifacts == tmp_path
    assert cfg.model_dir("risk") == tmp_path / "models" / "risk" / "champion"
    assert cfg.run_dir("2026-11-25", "manual__2026-11-25T05:00:00+00:00").name == "manual__2026-11-25T05_00_00_00_00"
    assert cfg.table("contact_plan") == "local.retention.contact_plan"
    assert isinstance(cfg, Config)
