"""A stand-in for the Vertex AI JobService at the network boundary: the real SDK builds and submits, this answers."""
from __future__ import annotations

import socket

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1.types import CustomJob, JobState
from google.rpc import status_pb2

PRODUCTION_ENV = {
    "RETENTION_RUNNER": "vertex",
    "RETENTION_BQ_ENDPOINT": "",
    "RETENTION_PROJECT": "acme-retention",
    "RETENTION_LOCATION": "US",
    "RETENTION_ARTIFACT_ROOT": "/home/airflow/gcs/data/artifacts",
    "RETENTION_DATA_DIR": "/home/airflow/gcs/data/datasets",
    "RETENTION_VERTEX_REGION": "us-central1",
    "RETENTION_TRAIN_IMAGE_CPU": "us-central1-docker.pkg.dev/acme-retention/retention/train-cpu:0.1.0",
    "RETENTION_TRAIN_IMAGE_GPU": "us-central1-docker.pkg.dev/acme-retention/retention/gpu:0.1.0",
    "RETENTION_VERTEX_SERVICE_ACCOUNT": "retention-train@acme-retention.iam.gserviceaccount.com",
    "RETENTION_VERTEX_STAGING_BUCKET": "gs://acme-retention-vertex",
    "RETENTION_VERTEX_ARTIFACT_URI": "gs://us-central1-retention-1a2b3c-bucket/data/artifacts",
    "RETENTION_VERTEX_DATA_URI": "gs://us-central1-retention-1a2b3c-bucket/data/datasets",
    "RETENTION_RETRAIN_TABULAR_SCHEDULE": "0 1 * * 1",
    "RETENTION_RETRAIN_RLHF_SCHEDULE": "0 4 1 * *",
    "RETENTION_TRAIN_PROFILE": "full",
}
"""A Composer 3 environment's variables: Vertex runner, real BigQuery (empty endpoint), the bucket's FUSE paths."""


class FakeJobService:
    """Records each CustomJob the SDK creates and reports it finished (FAILED for display names in `fail`)."""

    def __init__(self, fail: tuple[str, ...] = ()):
        self.fail = fail
        self.created: list[tuple[str, CustomJob]] = []
        self.jobs: dict[str, CustomJob] = {}

    def create_custom_job(self, parent: str, custom_job: CustomJob, timeout=None) -> CustomJob:
        self.created.append((parent, CustomJob(custom_job)))
        done = CustomJob(custom_job)
        done.name = f"{parent}/customJobs/{len(self.created)}"
        if custom_job.display_name in self.fail:
            done.state = JobState.JOB_STATE_FAILED
            done.error = status_pb2.Status(code=3, message="gate failed: exit code 1")
        else:
            done.state = JobState.JOB_STATE_SUCCEEDED
        self.jobs[done.name] = done
        return done

    def get_custom_job(self, name: str, retry=None) -> CustomJob:
        return self.jobs[name]

    def spec(self, display_name: str) -> CustomJob:
        return next(job for _, job in self.created if job.display_name == display_name)


def install(monkeypatch, service: FakeJobService) -> FakeJobService:
    """Route the SDK's JobService client to `service` and give it anonymous default credentials (no ADC lookup)."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    monkeypatch.setattr(initializer.global_config, "_credentials", AnonymousCredentials())
    monkeypatch.setattr(aiplatform.CustomJob, "_instantiate_client",
                        classmethod(lambda cls, location=None, credentials=None, appended_user_agent=None: service))
    return service


def block_network(monkeypatch) -> None:
    """Any lookup of, or connection to, another host fails the test: everything here must work offline."""
    local_names = {None, "localhost", "127.0.0.1", "::1", socket.gethostname()}
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in local_names:
            raise AssertionError(f"network lookup attempted: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        if sock.family != socket.AF_UNIX and address[0] not in local_names:
            raise AssertionError(f"network connection attempted: {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def no_network(monkeypatch):
    block_network(monkeypatch)
