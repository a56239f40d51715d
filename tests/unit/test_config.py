import json

import pytest

from retention.infra import artifacts
from retention.config import Config, load_config
from tests.fake_vertex import PRODUCTION_ENV


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
    assert cfg.run_dir("2026-11-25", "manual__2026-11-25T05:00:00+00:00").name == "manual__2026-11-25T05_00_00_00_00"
    assert cfg.table("contact_plan") == "local.retention.contact_plan"
    assert isinstance(cfg, Config)


def test_model_dir_resolves_the_champion_through_its_pointer(tmp_path):
    cfg = load_config(env={"RETENTION_ARTIFACT_ROOT": f"file://{tmp_path}"})
    assert cfg.model_dir("risk") == tmp_path / "models" / "risk" / "champion"  # nothing promoted: the old layout
    version = artifacts.version_dir(tmp_path, "risk", "20260301T000000Z-aaaaaa")
    version.mkdir(parents=True)
    (version / "metrics.json").write_text(json.dumps({"version": version.name}))
    artifacts.promote(tmp_path, "risk", version.name)
    assert cfg.model_dir("risk") == version
    assert load_config({"risk_model_uri": "/models/risk-7"}, env={}).model_dir("risk").as_posix() == "/models/risk-7"


def test_production_settings_default_to_the_local_runner():
    cfg = load_config(env={})
    assert (cfg.runner, cfg.train_profile, cfg.vertex_region) == ("local", "quick", "us-central1")
    assert (cfg.retrain_tabular_schedule, cfg.retrain_rlhf_schedule) == ("0 2 * * 0", "0 3 1 * *")


def test_production_settings_from_the_environment():
    cfg = load_config(env=PRODUCTION_ENV)
    assert cfg.runner == "vertex" and cfg.vertex_region == "us-central1" and cfg.train_profile == "full"
    assert cfg.retrain_rlhf_schedule == "0 4 1 * *" and cfg.retrain_tabular_schedule == "0 1 * * 1"
    assert cfg.train_image_gpu == PRODUCTION_ENV["RETENTION_TRAIN_IMAGE_GPU"]
    assert cfg.vertex_artifact_uri == "gs://us-central1-retention-1a2b3c-bucket/data/artifacts"
    assert cfg.artifact_root == "/home/airflow/gcs/data/artifacts" and not cfg.is_local_bq


def test_vertex_runner_names_every_missing_variable():
    with pytest.raises(ValueError, match="needs RETENTION_TRAIN_IMAGE_GPU, RETENTION_VERTEX_SERVICE_ACCOUNT, "
                                         "RETENTION_VERTEX_STAGING_BUCKET, RETENTION_VERTEX_ARTIFACT_URI, "
                                         "RETENTION_VERTEX_DATA_URI$"):
        load_config(env={"RETENTION_RUNNER": "vertex", "RETENTION_TRAIN_IMAGE_CPU": "img"})


@pytest.mark.parametrize("env, message", [
    ({"RETENTION_RUNNER": "kubernetes"}, "runner='kubernetes'"),
    ({"RETENTION_TRAIN_PROFILE": "tiny"}, "train_profile='tiny'"),
    ({**PRODUCTION_ENV, "RETENTION_VERTEX_ARTIFACT_URI": "/home/airflow/gcs/data"},
     "RETENTION_VERTEX_ARTIFACT_URI.*expected a gs:// URI"),
])
def test_production_settings_are_checked(env, message):
    with pytest.raises(ValueError, match=message):
        load_config(env=env)
