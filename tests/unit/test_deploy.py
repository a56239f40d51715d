"""Composer deploy: the layout, the sync through the real google-cloud-storage client (a fake HTTP session answers
the JSON API in memory, no network), the .airflowignore as Airflow reads it, and the environment's requirements."""
from __future__ import annotations

import base64
import hashlib
import json
import shutil
import urllib.parse

import pytest
import requests
from google.auth.credentials import AnonymousCredentials

from retention.infra import deploy
from retention.config import REPO_ROOT
from tests.fake_vertex import no_network  # noqa: F401

BUCKET = "us-central1-retention-1a2b3c-bucket"


class FakeGCS:
    """The few Cloud Storage JSON API calls a sync makes (list, multipart upload, delete), as a requests session."""

    is_mtls = False

    def __init__(self, objects: dict[str, bytes] | None = None):
        self.objects = dict(objects or {})
        self.calls: list[tuple[str, str]] = []

    def request(self, method, url, data=None, headers=None, **kwargs):
        parsed = urllib.parse.urlparse(url)
        path = urllib.parse.unquote(parsed.path)
        self.calls.append((method, path))
        if method == "GET" and path == f"/storage/v1/b/{BUCKET}/o":
            prefix = urllib.parse.parse_qs(parsed.query).get("prefix", [""])[0]
            items = [self._resource(n) for n in sorted(self.objects) if n.startswith(prefix)]
            return _response(200, {"kind": "storage#objects", "items": items})
        if method == "POST" and path == f"/upload/storage/v1/b/{BUCKET}/o":
            name, content = _multipart(data, headers["content-type"])
            self.objects[name] = content
            return _response(200, self._resource(name))
        if method == "DELETE" and path.startswith(f"/storage/v1/b/{BUCKET}/o/"):
            del self.objects[path.removeprefix(f"/storage/v1/b/{BUCKET}/o/")]
            return _response(204, None)
        return _response(404, {"error": {"code": 404, "message": f"{method} {path}"}})

    def _resource(self, name: str) -> dict:
        content = self.objects[name]
        return {"kind": "storage#object", "bucket": BUCKET, "name": name, "size": str(len(content)),
                "md5Hash": base64.b64encode(hashlib.md5(content).digest()).decode()}


def _response(status: int, body) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = b"" if body is None else json.dumps(body).encode()
    response.headers["content-type"] = "application/json"
    return response


def _multipart(data: bytes, content_type: bytes | str) -> tuple[str, bytes]:
    """(object name, content) of a multipart/related upload body: a JSON metadata part, then the bytes."""
    content_type = content_type.decode() if isinstance(content_type, bytes) else content_type
    boundary = content_type.split('boundary="')[1].rstrip('"').encode()
    metadata, content = (part.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
                         for part in data.split(b"--" + boundary)[1:3])
    return json.loads(metadata)["name"], content


@pytest.fixture
def storage_client():
    from google.cloud import storage

    return storage.Client(project="acme-retention", credentials=AnonymousCredentials(), _http=FakeGCS())


def test_layout_puts_package_and_runner_beside_the_dags():
    names = {u.destination for u in deploy.composer_uploads()}
    assert {"dags/retention_daily.py", "dags/retention_retrain_tabular.py", "dags/retention_retrain_policy.py",
            "dags/retention_retrain_rlhf.py", "dags/retention_runner.py", "dags/.airflowignore",
            "dags/retention/config.py", "dags/retention/infra/vertex.py", "dags/sql/daily_customers.sql",
            "dags/sql/schema/contact_plan.json"} <= names
    assert any(n.startswith("dags/expectations/") for n in names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert all(n.startswith("dags/") for n in names)


def test_dry_run_lists_without_credentials_or_network(no_network, capsys):
    assert deploy.main(["composer", "--bucket", f"gs://{BUCKET}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"plugins/retention_runner.py -> gs://{BUCKET}/dags/retention_runner.py" in out
    assert f"would copy {len(deploy.composer_uploads())} files, deleted 0" in out


@pytest.mark.parametrize("uri", ["gs://", "gs://bucket/dags", ""])
def test_bucket_must_be_the_environment_bucket(uri):
    with pytest.raises(ValueError):
        deploy.bucket_name(uri)


def test_sync_copies_changes_and_deletes_only_owned_stale_objects(storage_client, tmp_path, no_network):
    fake = storage_client._http
    first, deleted = deploy.deploy_composer(f"gs://{BUCKET}", client=storage_client)
    assert deleted == [] and {u.destination for u in first} == set(fake.objects)
    assert fake.objects["dags/retention_runner.py"] == (REPO_ROOT / "plugins" / "retention_runner.py").read_bytes()

    fake.objects |= {"dags/retention_retrain_old.py": b"old", "dags/airflow_monitoring.py": b"composer's",
                     "data/artifacts/models/risk/champion/metrics.json": b"{}"}
    again, deleted = deploy.deploy_composer(f"gs://{BUCKET}", client=storage_client)
    assert again == [] and deleted == ["dags/retention_retrain_old.py"]
    assert "dags/airflow_monitoring.py" in fake.objects and "data/artifacts/models/risk/champion/metrics.json" in fake.objects

    (tmp_path / "telco").mkdir()
    (tmp_path / "telco" / "churn.csv").write_text("customerID,Churn\n1,No\n")
    copied, _ = deploy.deploy_composer(f"gs://{BUCKET}", datasets=tmp_path, client=storage_client)
    assert [u.destination for u in copied] == ["data/datasets/telco/churn.csv"]


def test_airflowignore_leaves_only_dag_files_in_the_deployed_dags_folder(tmp_path):
    from airflow.utils.file import list_py_file_paths

    for upload in deploy.composer_uploads():
        target = tmp_path / upload.destination
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(upload.source, target)
    found = {p.split("/dags/", 1)[1] for p in map(str, list_py_file_paths(tmp_path / "dags"))}
    assert found == {p.name for p in (REPO_ROOT / "dags").glob("retention_*.py")}


def test_requirements_are_the_dependencies_less_composers_own(tmp_path):
    reqs = deploy.composer_requirements()
    assert not any(r.startswith("apache-airflow") for r in reqs)
    assert "xgboost==3.2.0" in reqs and "great-expectations==1.24.1" in reqs
    out = tmp_path / "composer-requirements.txt"
    deploy.main(["composer", "--bucket", BUCKET, "--dry-run", "--requirements", str(out)])
    assert out.read_text().splitlines() == reqs
