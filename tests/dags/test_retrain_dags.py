"""The retraining DAGs: they parse under a production configuration with no network, wire the expected tasks and
Assets, and run their jobs through the runner: locally as subprocess commands, in production as Vertex AI jobs.
The runner's stages of the daily plan: in process, or vLLM generation as a Vertex AI job."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from retention.pipeline import daily
from retention.infra import jobs
from retention.config import REPO_ROOT, load_config
from retention.pipeline.stage import summary_path
from tests.fake_vertex import PRODUCTION_ENV, FakeJobService, block_network, install

RETRAIN_EDGES = {
    "retention_retrain_tabular": {"train_risk": set(), "train_accept": set()},
    "retention_retrain_policy": {"train_policy": set()},
    "retention_retrain_rlhf": {"train_sft": {"train_ppo_text"}, "train_reward": {"train_ppo_text"},
                               "train_judge": {"train_ppo_text"}, "train_ppo_text": set()},
}
OUTLETS = {"train_risk": "risk", "train_accept": "accept", "train_policy": "policy", "train_sft": "sft",
           "train_reward": "reward", "train_judge": "judge", "train_ppo_text": "ppo_text"}


@pytest.fixture(scope="module")
def production(airflow_db):
    """A Composer-like process for this module: the production variables set, every network call refused."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in PRODUCTION_ENV.items():
            mp.setenv(name, value)
        block_network(mp)
        yield PRODUCTION_ENV


@pytest.fixture(scope="module")
def prod_dagbag(production):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_every_dag_parses_in_production_without_network(prod_dagbag):
    assert prod_dagbag.import_errors == {}
    assert set(prod_dagbag.dag_ids) == {p.stem for p in (REPO_ROOT / "dags").glob("retention_*.py")}
    cfg = load_config()
    assert cfg.is_local_bq is False and cfg.runner == "vertex"


@pytest.mark.parametrize("dag_id", sorted(RETRAIN_EDGES))
def test_retrain_task_graph_and_outlets(prod_dagbag, dag_id):
    dag = prod_dagbag.dags[dag_id]
    assert {t.task_id: set(t.downstream_task_ids) for t in dag.tasks} == RETRAIN_EDGES[dag_id]
    assert {t.task_id: [o.uri for o in t.outlets] for t in dag.tasks} == {
        t: [jobs.champion_uri(OUTLETS[t])] for t in RETRAIN_EDGES[dag_id]}
    assert dag.params["profile"] == "full" and dag.max_active_runs == 1 and dag.catchup is False


def test_schedules_come_from_settings_and_assets(prod_dagbag):
    from airflow.sdk import Asset

    assert prod_dagbag.dags["retention_retrain_tabular"].schedule == "0 1 * * 1"
    assert prod_dagbag.dags["retention_retrain_rlhf"].schedule == "0 4 1 * *"
    policy = prod_dagbag.dags["retention_retrain_policy"]
    assert policy.schedule == Asset(jobs.champion_uri("risk")) & Asset(jobs.champion_uri("accept"))


def test_local_runner_runs_the_job_as_a_subprocess(monkeypatch):
    from retention_runner import run_training_job

    cfg = load_config(env={"RETENTION_ARTIFACT_ROOT": "/tmp/artifacts", "RETENTION_DATA_DIR": "/tmp/data"})
    calls = []
    monkeypatch.setattr(jobs, "run_local", lambda job, args: calls.append((job, args)))
    run_training_job(cfg, "train_sft", ["--profile", "quick"])
    assert calls == [("train_sft", ["--artifact-root", "/tmp/artifacts", "--data-dir", "/tmp/data",
                                    "--profile", "quick"])]
    assert jobs.command("train_sft", [])[1:] == ["-m", "training.train_sft"]


def _run(dag, day: int):
    return dag.test(logical_date=dt.datetime(2026, 3, day, 2, tzinfo=dt.timezone.utc))


def test_policy_dag_submits_a_cpu_vertex_job_and_updates_its_asset(prod_dagbag, monkeypatch):
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    service = install(monkeypatch, FakeJobService())
    run = _run(prod_dagbag.dags["retention_retrain_policy"], 1)
    assert run.state == "success"
    (pool,) = service.spec("retention-train_policy").job_spec.worker_pool_specs
    assert pool.container_spec.image_uri == PRODUCTION_ENV["RETENTION_TRAIN_IMAGE_CPU"]
    assert pool.machine_spec.machine_type == "n2-standard-8"
    assert list(pool.container_spec.args)[-2:] == ["--profile", "full"]
    assert service.spec("retention-train_policy").job_spec.service_account == \
        PRODUCTION_ENV["RETENTION_VERTEX_SERVICE_ACCOUNT"]
    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).all()
        assert [e.asset.uri for e in events] == [jobs.champion_uri("policy")]


def test_rlhf_gate_failure_stops_ppo_text(prod_dagbag, monkeypatch):
    """A reward model that fails its gate fails its task: PPO-text never starts; SFT is still promoted."""
    service = install(monkeypatch, FakeJobService(fail=("retention-train_reward",)))
    run = _run(prod_dagbag.dags["retention_retrain_rlhf"], 2)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert states == {"train_sft": "success", "train_reward": "failed", "train_judge": "success",
                      "train_ppo_text": "upstream_failed"}
    assert {job.display_name for _, job in service.created} == {"retention-train_sft", "retention-train_reward",
                                                                 "retention-train_judge"}
    (pool,) = service.spec("retention-train_sft").job_spec.worker_pool_specs
    assert pool.machine_spec.accelerator_type.name == "NVIDIA_L4"
    assert pool.container_spec.image_uri == PRODUCTION_ENV["RETENTION_TRAIN_IMAGE_GPU"]


def test_uplift_dag_waits_for_outcomes_then_trains_and_updates_its_asset(prod_dagbag, monkeypatch):
    """Retraining is skipped below uplift_min_new_outcomes; at it, the job runs on a CPU Vertex machine."""
    from airflow.models.asset import AssetEvent
    from airflow.sdk import Asset
    from airflow.utils.session import create_session

    from retention.infra import bq
    from retention.pipeline import outcomes

    dag = prod_dagbag.dags["retention_retrain_uplift"]
    assert {t.task_id: set(t.downstream_task_ids) for t in dag.tasks} == {
        "enough_new_outcomes": {"train_uplift"}, "train_uplift": set()}
    assert {t.task_id: [o.uri for o in t.outlets] for t in dag.tasks} == {
        "enough_new_outcomes": [], "train_uplift": [jobs.champion_uri("uplift")]}
    assert dag.schedule == "0 3 * * 1" and dag.params["profile"] == "full" and dag.max_active_runs == 1
    assert not isinstance(dag.schedule, Asset)

    monkeypatch.setattr(bq, "client", lambda cfg: None)
    needed = load_config().uplift_min_new_outcomes
    for day, new, trained in ((3, needed - 1, False), (4, needed, True)):
        monkeypatch.setattr(outcomes, "new_since_champion", lambda client, cfg, name, n=new: n)
        service = install(monkeypatch, FakeJobService())
        run = _run(dag, day)
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert run.state == "success"
        assert states == {"enough_new_outcomes": "success", "train_uplift": "success" if trained else "skipped"}
        assert [job.display_name for _, job in service.created] == (["retention-train_uplift"] if trained else [])
    (pool,) = service.spec("retention-train_uplift").job_spec.worker_pool_specs
    assert pool.container_spec.image_uri == PRODUCTION_ENV["RETENTION_TRAIN_IMAGE_CPU"]
    assert list(pool.container_spec.args)[-2:] == ["--profile", "full"]
    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).all()
        assert [e.asset.uri for e in events] == [jobs.champion_uri("uplift")]


DS, RUN_ID = "2026-03-08", "scheduled__2026-03-08T05:00:00+00:00"


def _stages_in_process(monkeypatch) -> list[tuple[str, str, str]]:
    """Stand-ins for retention.pipeline.daily's generate and shield that record their calls."""
    calls = []

    def stand_in(name):
        def stage(cfg, ds, run_id):
            calls.append((name, ds, run_id))
            return {name: 1}
        return stage

    for name in ("generate", "shield"):
        monkeypatch.setattr(daily, name, stand_in(name))
    return calls


@pytest.mark.parametrize("env, params, stage", [
    ({}, {"generator": "vllm"}, "generate"),                   # local runner: everything in process
    (PRODUCTION_ENV, {"generator": "template"}, "generate"),   # vertex runner, no LLM to run on a GPU
    (PRODUCTION_ENV, {"generator": "vllm"}, "shield"),         # vertex runner, a stage that is not generation
])
def test_run_stage_in_process(monkeypatch, env, params, stage):
    from retention_runner import run_stage

    calls = _stages_in_process(monkeypatch)
    install(monkeypatch, FakeJobService())
    assert run_stage(load_config(params, env=env), stage, DS, RUN_ID) == {stage: 1}
    assert calls == [(stage, DS, RUN_ID)]


class GenerationJob(FakeJobService):
    """The fake JobService, and what the job's `python -m retention.pipeline.stage generate` leaves: its summary."""

    def __init__(self, cfg, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg

    def create_custom_job(self, parent, custom_job, timeout=None):
        if custom_job.display_name not in self.fail:
            summary_path(self.cfg, DS, RUN_ID, "generate").write_text(json.dumps({"messages": 42}))
        return super().create_custom_job(parent, custom_job, timeout)


def test_run_stage_generates_with_vllm_as_a_vertex_job(monkeypatch, tmp_path):
    from retention_runner import run_stage

    calls = _stages_in_process(monkeypatch)
    cfg = load_config({"generator": "vllm", "artifact_root": str(tmp_path)}, env=PRODUCTION_ENV)
    cfg.run_dir(DS, RUN_ID).mkdir(parents=True)
    summary_path(cfg, DS, RUN_ID, "generate").write_text(json.dumps({"messages": -1}))  # an earlier attempt's
    service = install(monkeypatch, GenerationJob(cfg))
    assert run_stage(cfg, "generate", DS, RUN_ID) == {"messages": 42} and calls == []
    sent = service.spec("retention-generate")
    (pool,) = sent.job_spec.worker_pool_specs
    assert list(pool.container_spec.args) == ["generate", "--ds", DS, "--run-id", RUN_ID]
    assert pool.machine_spec.accelerator_type.name == "NVIDIA_L4"
    assert pool.container_spec.image_uri == PRODUCTION_ENV["RETENTION_TRAIN_IMAGE_GPU"]
    assert sent.job_spec.service_account == PRODUCTION_ENV["RETENTION_VERTEX_SERVICE_ACCOUNT"]

    install(monkeypatch, GenerationJob(cfg, fail=("retention-generate",)))
    with pytest.raises(RuntimeError, match="gate failed"):  # the fake's failure message; the task fails
        run_stage(cfg, "generate", DS, RUN_ID)
    assert not summary_path(cfg, DS, RUN_ID, "generate").exists()
