"""The one configuration object, built in one place from environment variables and DAG params."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

REPO_ROOT = Path(__file__).resolve().parents[1]
CHANNELS = ("email", "sms", "phone", "app")
"""The contact channels of the data contract (customers.channel)."""
"""Checkout (or Composer bucket) root holding sql/ and expectations/."""


@dataclass(frozen=True)
class Config:
    """Everything a task or job needs to know, typed and frozen."""

    project: str = "local"
    """GCP project id (`local` for the embedded BigQuery)."""
    location: str = "US"
    """BigQuery / Vertex AI location."""
    dataset: str = "retention"
    """Dataset of the data contract; staging uses `<dataset>_staging`."""
    artifact_root: str = "./artifacts"
    """Models, run staging, reports, plots, emulator data (`gs://...` in production)."""
    bq_endpoint: str = "http://127.0.0.1:9050"
    """BigQuery REST endpoint; empty means real BigQuery with application default credentials."""
    bq_grpc_port: int = 9060
    """The embedded emulator's Storage Read/Write gRPC port (local only)."""
    bq_timeout_s: float = 1800.0
    """Most seconds one BigQuery job may run: set on the job, and the client stops waiting then."""
    maximum_bytes_billed: int = 10 << 30
    """Most bytes one user query (`retention query`) may bill (10 GiB); 0 = no cap."""
    bq_labels: str = ""
    """Labels `key=value,...` on every BigQuery job; under Airflow by default the task's dag, task and ds."""
    daily_budget: float = 5000.0
    """Currency units the day's offers may commit at worst."""
    offer_pcts: tuple[float, ...] = (0.0, 0.05, 0.10, 0.15)
    """Discount of offer levels 0..3 as fractions."""
    channel_cost: float = 0.0
    """Extra cost per message on every channel (agency fees, say), added to channel_costs."""
    channel_costs: tuple[float, ...] = (0.01, 0.05, 4.00, 0.005)
    """Cost of one message per channel, in CHANNELS order (email, sms, phone, app); see the README for sources."""
    offer_efficacy: tuple[float, ...] = (0.10, 0.40, 0.50, 0.60)
    """Per offer level, the share of would-be churners who accept it and then stay (a check-in saves few)."""
    contact_backfire: float = 0.03
    """Relative rise in churn risk of a contacted customer who does not accept: a contact reminds some to leave."""
    world: str = "base"
    """The simulator's world (simulation/worlds.py): base | no_history | fatigue | backfire."""
    fatigue_cap: int = 3
    """Most contacts per customer inside the fatigue window (today's included)."""
    fatigue_window_days: int = 30
    """Length of the fatigue window in days."""
    cooldown_days: int = 7
    """No contact within this many days of the last one."""
    quiet_start_hour: int = 22
    """Local hour when quiet hours begin."""
    quiet_end_hour: int = 8
    """Local hour when quiet hours end."""
    send_window_start_hour: int = 6
    """UTC hour of the plan day from which its messages may be sent: one hour after the daily DAG's 05:00 UTC
    schedule, so no send_at lies before the plan exists."""
    holdout_share: float = 0.10
    """Share of customers never contacted, by a stable hash of customer_id."""
    impact_window_days: int = 28
    """Plan days the daily DAG's impact task reports on, in the window ending the outcome horizon (30 days) before ds."""
    max_reject_share: float = 0.05
    """The run fails when more than this share of input rows is rejected."""
    generator: str = "template"
    """Message backend: template | transformers | vllm."""
    score_shards: int = 1
    """Score the day in this many shards by customer hash (mapped tasks in the daily DAG); decide stays one pass."""
    chunk_rows: int = 500_000
    """Rows a stage holds at once: every stage streams the day in chunks of about this many customers (extract
    buckets them by a stable hash of customer_id, so a customer's rows share a chunk), keeping memory flat as
    the day grows; decide holds only its narrow columns for all of them."""
    reason_sample_share: float = 0.01
    """Share of not-contacted customers (by a stable hash of customer_id) whose plan rows also get reason codes; every
    contacted row has them (its message uses them). Exact TreeSHAP for all customers cost ~7x the five predicts."""
    risk_model_uri: str = ""
    """Risk model directory; empty means the risk champion (`model_dir`)."""
    accept_model_uri: str = ""
    """Accept model directory; empty means the accept champion."""
    policy_model_uri: str = ""
    """Decision policy directory; empty means the policy champion (greedy EV when there is none)."""
    use_uplift: bool = False
    """Score uplift_0..3 with the uplift champion (training/train_uplift.py), for the decision to read in place of the
    plan's own model of each offer's churn lift; off: the columns stay null."""
    uplift_model_uri: str = ""
    """Uplift model directory; empty means the uplift champion."""
    llm_max_messages: int = 0
    """Most messages an LLM backend writes per run (highest expected value first; the rest get the template); 0 = all."""
    base_model: str = ""
    """Base LM for SFT/reward/PPO-text and the generator: a path or hub id; empty means SmolLM2-135M-Instruct."""
    message_model_uri: str = ""
    """Message model directory; empty means the ppo_text (RLHF) champion."""
    brand_name: str = "Northwind Mobile"
    """The company name messages may use (templates and prompts name it; the shield allows no other proper noun)."""
    language: str = "en"
    """Language every message must be written in (the shield's language check; `en` is the one it knows)."""
    best_of_n: int = 4
    """Candidates an LLM backend samples per contact; the shield drops failures, the reward model picks the best."""
    data_dir: str = str(REPO_ROOT.parent / "shared" / "data")
    """Folder holding the public data sets (IBM Telco, UCI Bank Marketing, preference data)."""
    online_daily_budget: float = 2000.0
    """Currency units a day's online offers (`POST /retain`) may commit at worst, apart from the plan's budget."""
    serve_max_body_bytes: int = 16384
    """Largest request body the online service accepts; a bigger one is refused with 413."""

    # production: where training and generation jobs run (read on the Composer side, never passed to a job)
    runner: str = "local"
    """`local`: jobs are child processes of the Airflow worker (embedded default); `vertex`: Vertex AI custom jobs."""
    vertex_region: str = "us-central1"
    """Vertex AI region of the jobs (L4 GPUs are offered there); BigQuery's is `location`."""
    train_image_cpu: str = ""
    """Artifact Registry URI of docker/Dockerfile.train-cpu (tabular and policy jobs)."""
    train_image_gpu: str = ""
    """Artifact Registry URI of docker/Dockerfile.gpu (SFT, reward model, PPO-text, vLLM generation)."""
    vertex_service_account: str = ""
    """Email of the service account the Vertex AI jobs run as."""
    vertex_staging_bucket: str = ""
    """gs:// bucket (or prefix) where Vertex AI keeps each job's own output directory."""
    vertex_artifact_uri: str = ""
    """The artifact root as a gs:// URI: the folder the workers see at `artifact_root`, mounted into the jobs."""
    vertex_data_uri: str = ""
    """The data folder as a gs:// URI: the folder the workers see at `data_dir`, mounted into the jobs."""
    retrain_tabular_schedule: str = "0 2 * * 0"
    """Cron of retention_retrain_tabular (Sundays 02:00 UTC); the policy DAG follows its champions."""
    retrain_rlhf_schedule: str = "0 3 1 * *"
    """Cron of retention_retrain_rlhf (the 1st of each month, 03:00 UTC)."""
    retrain_uplift_schedule: str = "0 3 * * 1"
    """Cron of retention_retrain_uplift (Mondays 03:00 UTC): it retrains only after uplift_min_new_outcomes."""
    uplift_min_new_outcomes: int = 50_000
    """Rows of `outcomes` from plans made since the uplift champion was promoted that trigger its retraining (about a
    week of the demo's 7,043 customers)."""
    train_profile: str = "quick"
    """Default `--profile` of scheduled retraining (`full` in production)."""

    @property
    def ledger_lookback_days(self) -> int:
        """Oldest plan (days before ds) whose messages can still fall in the fatigue window or be pending: the
        window plus the longest follow-up (cooldown + 6 days, `rules.followup_days`)."""
        return self.fatigue_window_days + self.cooldown_days + 7

    @property
    def staging_dataset(self) -> str:
        return f"{self.dataset}_staging"

    @property
    def is_local_bq(self) -> bool:
        return bool(self.bq_endpoint)

    @property
    def artifacts(self) -> Path:
        """The artifact root as a local path (file:// stripped)."""
        root = self.artifact_root.removeprefix("file://")
        return Path(root).resolve()

    def model_dir(self, name: str) -> Path:
        """The directory model `name` is read from: its URI when set, else its champion (through the pointer)."""
        # imported here, not at module level: artifacts brings the plotting stack, which DAG parsing does not need
        from retention.infra.artifacts import champion_dir

        uri = {"risk": self.risk_model_uri, "accept": self.accept_model_uri,
               "policy": self.policy_model_uri, "uplift": self.uplift_model_uri,
               "ppo_text": self.message_model_uri}.get(name, "")
        return Path(uri) if uri else champion_dir(self.artifacts, name)

    def run_dir(self, ds: str, run_id: str) -> Path:
        """Where the stages of one run of one day stage their Parquet files."""
        return self.artifacts / "runs" / ds / _safe(run_id)

    def table(self, name: str, staging: bool = False) -> str:
        """Fully qualified table id."""
        return f"{self.project}.{self.staging_dataset if staging else self.dataset}.{name}"


ENV = {
    "RETENTION_PROJECT": "project",
    "RETENTION_LOCATION": "location",
    "RETENTION_DATASET": "dataset",
    "RETENTION_ARTIFACT_ROOT": "artifact_root",
    "RETENTION_BQ_ENDPOINT": "bq_endpoint",
    "RETENTION_BQ_GRPC_PORT": "bq_grpc_port",
    "RETENTION_BQ_TIMEOUT_S": "bq_timeout_s",
    "RETENTION_MAXIMUM_BYTES_BILLED": "maximum_bytes_billed",
    "RETENTION_BQ_LABELS": "bq_labels",
    "RETENTION_DAILY_BUDGET": "daily_budget",
    "RETENTION_OFFER_PCTS": "offer_pcts",
    "RETENTION_CHANNEL_COSTS": "channel_costs",
    "RETENTION_OFFER_EFFICACY": "offer_efficacy",
    "RETENTION_CONTACT_BACKFIRE": "contact_backfire",
    "RETENTION_WORLD": "world",
    "RETENTION_CHANNEL_COST": "channel_cost",
    "RETENTION_FATIGUE_CAP": "fatigue_cap",
    "RETENTION_FATIGUE_WINDOW_DAYS": "fatigue_window_days",
    "RETENTION_COOLDOWN_DAYS": "cooldown_days",
    "RETENTION_QUIET_START_HOUR": "quiet_start_hour",
    "RETENTION_QUIET_END_HOUR": "quiet_end_hour",
    "RETENTION_SEND_WINDOW_START_HOUR": "send_window_start_hour",
    "RETENTION_HOLDOUT_SHARE": "holdout_share",
    "RETENTION_IMPACT_WINDOW_DAYS": "impact_window_days",
    "RETENTION_MAX_REJECT_SHARE": "max_reject_share",
    "RETENTION_GENERATOR": "generator",
    "RETENTION_SCORE_SHARDS": "score_shards",
    "RETENTION_REASON_SAMPLE_SHARE": "reason_sample_share",
    "RETENTION_CHUNK_ROWS": "chunk_rows",
    "RETENTION_RISK_MODEL_URI": "risk_model_uri",
    "RETENTION_ACCEPT_MODEL_URI": "accept_model_uri",
    "RETENTION_POLICY_MODEL_URI": "policy_model_uri",
    "RETENTION_USE_UPLIFT": "use_uplift",
    "RETENTION_UPLIFT_MODEL_URI": "uplift_model_uri",
    "RETENTION_MESSAGE_MODEL_URI": "message_model_uri",
    "RETENTION_BASE_MODEL": "base_model",
    "RETENTION_LLM_MAX_MESSAGES": "llm_max_messages",
    "RETENTION_BRAND_NAME": "brand_name",
    "RETENTION_LANGUAGE": "language",
    "RETENTION_BEST_OF_N": "best_of_n",
    "RETENTION_DATA_DIR": "data_dir",
    "RETENTION_ONLINE_DAILY_BUDGET": "online_daily_budget",
    "RETENTION_SERVE_MAX_BODY_BYTES": "serve_max_body_bytes",
    "RETENTION_RUNNER": "runner",
    "RETENTION_VERTEX_REGION": "vertex_region",
    "RETENTION_TRAIN_IMAGE_CPU": "train_image_cpu",
    "RETENTION_TRAIN_IMAGE_GPU": "train_image_gpu",
    "RETENTION_VERTEX_SERVICE_ACCOUNT": "vertex_service_account",
    "RETENTION_VERTEX_STAGING_BUCKET": "vertex_staging_bucket",
    "RETENTION_VERTEX_ARTIFACT_URI": "vertex_artifact_uri",
    "RETENTION_VERTEX_DATA_URI": "vertex_data_uri",
    "RETENTION_RETRAIN_TABULAR_SCHEDULE": "retrain_tabular_schedule",
    "RETENTION_RETRAIN_RLHF_SCHEDULE": "retrain_rlhf_schedule",
    "RETENTION_RETRAIN_UPLIFT_SCHEDULE": "retrain_uplift_schedule",
    "RETENTION_UPLIFT_MIN_NEW_OUTCOMES": "uplift_min_new_outcomes",
    "RETENTION_TRAIN_PROFILE": "train_profile",
}
"""Environment variable -> Config field."""

GENERATORS = ("template", "transformers", "vllm")
RUNNERS = ("local", "vertex")
TRAIN_PROFILES = ("quick", "full")
"""Profiles of scheduled retraining (the entry points also know `tiny`, for tests)."""
VERTEX_FIELDS = ("train_image_cpu", "train_image_gpu", "vertex_service_account", "vertex_staging_bucket",
                 "vertex_artifact_uri", "vertex_data_uri")
"""Settings the Vertex runner cannot do without."""
GCS_FIELDS = ("vertex_staging_bucket", "vertex_artifact_uri", "vertex_data_uri")


def load_config(params: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the Config: defaults, then environment variables, then DAG params (field names)."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {f: env[k] for k, f in ENV.items() if k in env}
    if "bq_labels" not in raw and env.get("AIRFLOW_CTX_DAG_ID"):  # the task runner exports its context
        raw["bq_labels"] = _airflow_labels(env)
    raw.update({k: v for k, v in (params or {}).items() if k in _FIELDS and v is not None})
    cfg = Config(**{k: _typed(k, v) for k, v in raw.items()})
    _check(cfg)
    return cfg


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _typed(name: str, value: Any) -> Any:
    """Convert a string (or param value) to the field's type, naming the field on failure."""
    kind = type(getattr(Config, name))
    try:
        if kind is bool and isinstance(value, str):  # bool("0") is True: spell the answers out
            return {"1": True, "true": True, "yes": True, "on": True,
                    "0": False, "false": False, "no": False, "off": False, "": False}[value.strip().lower()]
        if kind is tuple:
            items = value.split(",") if isinstance(value, str) else value
            return tuple(float(x) for x in items)
        return kind(value)
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"config {name}={value!r}: expected {kind.__name__}") from err


def _check(cfg: Config) -> None:
    if cfg.generator not in GENERATORS:
        raise ValueError(f"config generator={cfg.generator!r}: expected one of {GENERATORS}")
    if len(cfg.offer_pcts) != 4 or any(not 0 <= p < 1 for p in cfg.offer_pcts):
        raise ValueError(f"config offer_pcts={cfg.offer_pcts}: expected four fractions in [0, 1)")
    if len(cfg.channel_costs) != len(CHANNELS) or any(not c >= 0 for c in cfg.channel_costs):
        raise ValueError(f"config channel_costs={cfg.channel_costs}: expected {len(CHANNELS)} costs >= 0, in the "
                         f"order {CHANNELS}")
    if len(cfg.offer_efficacy) != 4 or any(not 0 <= e <= 1 for e in cfg.offer_efficacy):
        raise ValueError(f"config offer_efficacy={cfg.offer_efficacy}: expected four fractions in [0, 1]")
    if not 0 <= cfg.contact_backfire < 1:
        raise ValueError(f"config contact_backfire={cfg.contact_backfire}: expected a fraction in [0, 1)")
    if not 0 <= cfg.holdout_share < 1:
        raise ValueError(f"config holdout_share={cfg.holdout_share}: expected a fraction in [0, 1)")
    for name in ("quiet_start_hour", "quiet_end_hour", "send_window_start_hour"):
        if not 0 <= getattr(cfg, name) <= 23:
            raise ValueError(f"config {name}={getattr(cfg, name)}: expected an hour 0-23")
    if cfg.bq_timeout_s <= 0 or cfg.maximum_bytes_billed < 0:
        raise ValueError("config bq_timeout_s > 0 and maximum_bytes_billed >= 0 are required")
    if cfg.impact_window_days < 1:
        raise ValueError(f"config impact_window_days={cfg.impact_window_days}: expected at least 1")
    if not 0 <= cfg.reason_sample_share <= 1:
        raise ValueError(f"config reason_sample_share={cfg.reason_sample_share}: expected a fraction in [0, 1]")
    if cfg.chunk_rows < 1:
        raise ValueError(f"config chunk_rows={cfg.chunk_rows}: expected a positive row count")
    if not 1 <= cfg.score_shards <= 1024:
        raise ValueError(f"config score_shards={cfg.score_shards}: expected 1-1024")
    if cfg.daily_budget < 0 or cfg.fatigue_cap < 1 or cfg.cooldown_days < 0:
        raise ValueError("config daily_budget >= 0, fatigue_cap >= 1 and cooldown_days >= 0 are required")
    if cfg.online_daily_budget < 0 or cfg.serve_max_body_bytes < 1:
        raise ValueError("config online_daily_budget >= 0 and serve_max_body_bytes >= 1 are required")
    if cfg.runner not in RUNNERS:
        raise ValueError(f"config runner={cfg.runner!r}: expected one of {RUNNERS}")
    if cfg.train_profile not in TRAIN_PROFILES:
        raise ValueError(f"config train_profile={cfg.train_profile!r}: expected one of {TRAIN_PROFILES}")
    if cfg.runner == "vertex":
        _check_vertex(cfg)


def _check_vertex(cfg: Config) -> None:
    """The Vertex runner's settings: all present (the error names their variables), the bucket paths gs:// URIs."""
    variable = {field: name for name, field in ENV.items()}
    missing = [variable[f] for f in VERTEX_FIELDS if not getattr(cfg, f)]
    if missing:
        raise ValueError(f"config runner='vertex' needs {', '.join(missing)}")
    for field in GCS_FIELDS:
        if not getattr(cfg, field).startswith("gs://"):
            raise ValueError(f"config {field}={getattr(cfg, field)!r} ({variable[field]}): expected a gs:// URI")


def _airflow_labels(env: Mapping[str, str]) -> str:
    """Job labels of the running Airflow task: dag, task and ds (the logical date's day)."""
    labels = {"dag": env["AIRFLOW_CTX_DAG_ID"], "task": env.get("AIRFLOW_CTX_TASK_ID", ""),
              "ds": env.get("AIRFLOW_CTX_LOGICAL_DATE", "")[:10]}
    return ",".join(f"{k}={v}" for k, v in labels.items() if v)


def _safe(run_id: str) -> str:
    """A run id as a folder name (Airflow run ids hold ':' and '+')."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
