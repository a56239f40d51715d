"""Deploy to Cloud Composer: sync the DAGs, the runner, the package and its SQL and suites into the environment's bucket.

Usage:
    python -m retention.infra.deploy composer --bucket gs://us-central1-retention-1a2b3c-bucket --dry-run
    python -m retention.infra.deploy composer --bucket gs://... --datasets /path/to/data --requirements composer-requirements.txt

Layout in the bucket. Composer copies `dags/` to every Airflow component and puts that folder on
`sys.path`; it is where Composer documents local Python libraries. `plugins/` is for Airflow plugins
only and Composer 3 does not sync it to the scheduler or triggerer, so the runner module (a plain
module that DAG files import at parse time) goes beside the DAGs too:

    dags/retention_*.py                     the DAG files
    dags/retention_runner.py                plugins/retention_runner.py
    dags/retention/  dags/sql/  dags/expectations/
                                            the package source with what REPO_ROOT must hold beside it
    dags/.airflowignore                     keeps the DAG processor out of everything but the DAG files
    data/datasets/                          the public data sets (--datasets): training jobs read them through
                                            /gcs/<bucket>/data/datasets, tasks through /home/airflow/gcs/data/datasets

Third-party packages come from the environment's PyPI list (`--requirements` writes it from pyproject.toml).
A sync uploads what changed (by MD5) and deletes objects under the prefixes it owns that the checkout no
longer has; Composer's own files in the bucket (airflow_monitoring.py, logs/) are never touched.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from retention.config import REPO_ROOT

PACKAGE_DIRS = ("retention", "sql", "expectations")
"""Folders copied to dags/ unchanged."""
OWNED = ("dags/retention", "dags/sql/", "dags/expectations/", "dags/.airflowignore")
"""Object-name prefixes this deploy owns (and may delete from); `dags/retention` covers the DAGs and the runner."""
DATASETS = "data/datasets/"
COMPOSER_OWN = ("apache-airflow", "apache-airflow-providers-google", "google-cloud-aiplatform", "google-cloud-storage")
"""Dependencies the Composer image provides at its own pinned versions (Airflow, the Google provider and the
clients it brings); pinning them again would fight the image's constraints."""


@dataclass(frozen=True)
class Upload:
    """One file to copy: a local path and its object name in the environment's bucket."""

    source: Path
    destination: str


def bucket_name(uri: str) -> str:
    """`gs://name` (or `name`) -> `name`; a path inside the bucket is refused: the layout starts at its root."""
    name = uri.removeprefix("gs://").rstrip("/")
    if not name or "/" in name:
        raise ValueError(f"--bucket {uri!r}: expected the environment's bucket, e.g. gs://us-central1-env-1a2b3c-bucket")
    return name


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def composer_uploads(root: Path = REPO_ROOT, datasets: Path | None = None) -> list[Upload]:
    """Every file of the Composer layout (module docstring), sorted by object name."""
    uploads = [Upload(p, f"dags/{p.name}") for p in sorted((root / "dags").glob("retention_*.py"))]
    uploads.append(Upload(root / "dags" / ".airflowignore", "dags/.airflowignore"))
    uploads += [Upload(p, f"dags/{p.name}") for p in sorted((root / "plugins").glob("*.py"))]
    for folder in PACKAGE_DIRS:
        uploads += [Upload(p, f"dags/{p.relative_to(root).as_posix()}") for p in _files(root / folder)]
    if datasets is not None:
        uploads += [Upload(p, DATASETS + p.relative_to(datasets).as_posix()) for p in _files(datasets)]
    return sorted(uploads, key=lambda u: u.destination)


def md5_base64(path: Path) -> str:
    """A file's MD5 as GCS reports it (`md5Hash`: base64 of the digest)."""
    return base64.b64encode(hashlib.md5(path.read_bytes(), usedforsecurity=False).digest()).decode()


def plan_sync(uploads: list[Upload], existing: dict[str, str], owned: tuple[str, ...]) -> tuple[list[Upload], list[str]]:
    """What to copy (new or changed by MD5) and what to delete (owned objects the checkout no longer has)."""
    changed = [u for u in uploads if existing.get(u.destination) != md5_base64(u.source)]
    wanted = {u.destination for u in uploads}
    stale = sorted(name for name in existing if name.startswith(owned) and name not in wanted)
    return changed, stale


def deploy_composer(bucket: str, root: Path = REPO_ROOT, datasets: Path | None = None, dry_run: bool = False,
                    client=None) -> tuple[list[Upload], list[str]]:
    """Sync the Composer layout to `bucket`; returns (copied, deleted). A dry run lists every file and touches nothing."""
    name = bucket_name(bucket)
    uploads = composer_uploads(root, datasets)
    if dry_run:
        return uploads, []
    from google.cloud import storage

    client = storage.Client() if client is None else client
    target = client.bucket(name)
    owned = OWNED + ((DATASETS,) if datasets is not None else ())
    existing = {blob.name: blob.md5_hash for prefix in owned for blob in client.list_blobs(target, prefix=prefix)}
    changed, stale = plan_sync(uploads, existing, owned)
    for upload in changed:
        target.blob(upload.destination).upload_from_filename(str(upload.source))
    for name in stale:
        target.blob(name).delete()
    return changed, stale


def composer_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The project's runtime dependencies for the environment's PyPI list, less what the Composer image provides."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [d for d in deps if _name(d) not in COMPOSER_OWN]


def _name(requirement: str) -> str:
    for sep in ("==", ">=", "<=", "~=", "!=", "<", ">", "[", ";", " "):
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="retention deploy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="target", required=True)
    s = sub.add_parser("composer", help="sync DAGs, runner, package, SQL and suites to a Composer environment's bucket")
    s.add_argument("--bucket", required=True, help="the environment's bucket (gs://...), see `gcloud composer "
                   "environments describe ENV --location REGION --format 'value(config.dagGcsPrefix)'`")
    s.add_argument("--datasets", type=Path, help="also sync this folder of public data sets to data/datasets/")
    s.add_argument("--dry-run", action="store_true", help="list what would be copied; no credentials or network")
    s.add_argument("--requirements", type=Path, help="write the environment's PyPI requirements to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.requirements:
        args.requirements.write_text("\n".join(composer_requirements()) + "\n")
        print(f"wrote {args.requirements}")
    copied, deleted = deploy_composer(args.bucket, datasets=args.datasets, dry_run=args.dry_run)
    bucket = bucket_name(args.bucket)
    for upload in copied:
        print(f"{upload.source.relative_to(REPO_ROOT) if upload.source.is_relative_to(REPO_ROOT) else upload.source}"
              f" -> gs://{bucket}/{upload.destination}")
    for name in deleted:
        print(f"deleted gs://{bucket}/{name}")
    verb = "would copy" if args.dry_run else "copied"
    print(f"{verb} {len(copied)} files, deleted {len(deleted)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
