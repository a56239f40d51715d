"""retention_daily: the day's contact plan, one run per logical date `ds` (see DESIGN.md).

extract >> validate_input >> score (mapped over score_shards) >> decide >> generate >> shield >> validate_plan
>> publish >> impact (the holdout comparison of the plans whose 30-day outcomes are in). Each task is one call into
retention.pipeline.daily, keyed by (ds, run_id); stages hand over Parquet files under the artifact root, XCom
carries only small summaries. `score` is one mapped task per shard of customers (by customer_id hash); decide is
one ordered pass over every shard's candidates, so the plan is the same whatever the shard count.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, chain, dag, task
from airflow.sdk.exceptions import AirflowFailException

from retention.pipeline import daily
from retention.pipeline.impact import BadOutcomes
from retention_runner import run_stage
from retention.config import load_config

PARAMS = {
    "daily_budget": Param(None, type=["null", "number"], minimum=0, description="override the day's budget"),
    "generator": Param(None, type=["null", "string"], enum=[None, "template", "transformers", "vllm"],
                       description="override the message backend"),
    "holdout_share": Param(None, type=["null", "number"], minimum=0, maximum=0.5,
                           description="override the share of customers never contacted (by customer_id hash)"),
    "score_shards": Param(None, type=["null", "integer"], minimum=1, maximum=1024,
                          description="score in this many mapped tasks (customer hash shards)"),
}


@dag(
    schedule="0 5 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # a day plans against the contact ledger of the days before it: one day at a time, in order
    params=PARAMS,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["retention"],
    doc_md=__doc__,
)
def retention_daily():
    @task
    def extract(ds=None, run_id=None, params=None):
        try:
            return daily.extract(load_config(params), ds, run_id)
        except ValueError as err:  # no snapshot for ds (or a bad param): a retry cannot help, fail once
            raise AirflowFailException(str(err)) from err

    @task
    def validate_input(ds=None, run_id=None, params=None):
        return daily.validate_input(load_config(params), ds, run_id)

    @task
    def shards(params=None) -> list[int]:
        return list(range(load_config(params).score_shards))

    @task
    def score(shard: int, ds=None, run_id=None, params=None):
        return daily.score(load_config(params), ds, run_id, shard)

    @task
    def decide(ds=None, run_id=None, params=None):
        return daily.decide(load_config(params), ds, run_id)

    @task
    def generate(ds=None, run_id=None, params=None):
        # in-process, or on Vertex AI's L4 when generator=vllm under the vertex runner (plugins/retention_runner.py)
        return run_stage(load_config(params), "generate", ds, run_id)

    @task
    def shield(ds=None, run_id=None, params=None):
        return daily.shield(load_config(params), ds, run_id)

    @task
    def validate_plan(ds=None, run_id=None, params=None):
        return daily.validate_plan(load_config(params), ds, run_id)

    @task
    def publish(checks: dict, ds=None, run_id=None, params=None):
        return daily.publish(load_config(params), ds, run_id, checks["report_uri"])

    @task
    def impact(ds=None, params=None):
        # the holdout comparison of the plans whose outcome horizon has passed; no outcomes yet: logged, success
        try:
            return daily.impact(load_config(params), ds)
        except BadOutcomes as err:  # outcomes that cannot be compared: a retry cannot help, fail once
            raise AirflowFailException(str(err)) from err

    checks = validate_plan()
    shard_ids = shards()
    chain(extract(), validate_input(), shard_ids, score.expand(shard=shard_ids), decide(), generate(), shield(), checks,
          publish(checks), impact())


retention_daily()
