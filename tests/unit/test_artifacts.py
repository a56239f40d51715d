"""Promotion through the champion pointer: the order of its writes, what a reader sees between any two of them,
a crash between steps, a failed gate, and artifact roots from before the pointer."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from retention.infra import artifacts
from retention.infra.artifacts import champion_dir, champion_mirror, pointer_path, promote, promote_if_passed

OLD, NEW = "20260301T000000Z-aaaaaa", "20260308T000000Z-bbbbbb"


def make_version(root: Path, version: str, files: dict[str, str]) -> Path:
    """A finished run: its files, then metrics.json (what marks it finished)."""
    directory = artifacts.version_dir(root, "risk", version)
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    (directory / "metrics.json").write_text(json.dumps({"version": version}))
    return directory


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under a directory, by relative path."""
    if not directory.exists():
        return {}
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


@pytest.fixture
def two_versions(tmp_path):
    """OLD promoted (the champion), NEW finished: different contents and different files."""
    old = make_version(tmp_path, OLD, {"model.json": "old", "only_old.txt": "x"})
    new = make_version(tmp_path, NEW, {"model.json": "new", "tokenizer/vocab.txt": "a b c"})
    promote(tmp_path, "risk", OLD)
    return snapshot(old), snapshot(new)


def record(monkeypatch, after) -> list[tuple[str, str]]:
    """Log every rename and file copy promotion makes, calling `after()` once each is done."""
    ops: list[tuple[str, str]] = []
    real_replace, real_copy = os.replace, shutil.copyfile

    def replace(src, dst):
        real_replace(src, dst)
        ops.append(("replace", Path(dst).name))
        after()

    def copyfile(src, dst):
        real_copy(src, dst)
        ops.append(("copy", Path(dst).name))
        after()

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(shutil, "copyfile", copyfile)
    return ops


def test_pointer_is_the_commit_written_once_after_the_finished_version_then_the_mirror(tmp_path, two_versions,
                                                                                        monkeypatch):
    _, new = two_versions
    ops = record(monkeypatch, lambda: None)
    assert promote(tmp_path, "risk", NEW) == artifacts.version_dir(tmp_path, "risk", NEW)
    assert ops[0] == ("replace", "champion.json")  # nothing before the commit: the version was already finished
    assert [op for op in ops if op[0] == "replace"] == [("replace", "champion.json")]
    assert ops[1:] == [("copy", "model.json"), ("copy", "vocab.txt"), ("copy", "metrics.json")]  # metrics.json last
    pointer = json.loads(pointer_path(tmp_path, "risk").read_text())
    assert pointer["name"] == "risk" and pointer["version"] == NEW and pointer["promoted_at"].endswith("+00:00")
    assert snapshot(champion_mirror(tmp_path, "risk")) == new  # only_old.txt gone from the mirror
    assert sorted(p.name for p in (tmp_path / "models" / "risk").iterdir()) == [OLD, NEW, "champion", "champion.json"]


def test_a_reader_between_any_two_steps_sees_the_old_champion_or_the_new_one(tmp_path, two_versions, monkeypatch):
    old, new = two_versions
    seen, mirrors = [], []

    def read():
        seen.append(snapshot(champion_dir(tmp_path, "risk")))
        mirrors.append(snapshot(champion_mirror(tmp_path, "risk")))

    ops = record(monkeypatch, read)
    promote(tmp_path, "risk", NEW)
    assert len(seen) == len(ops) == 4
    assert all(s == new for s in seen)  # from the pointer on, every read is whole and new
    # the mirror: still the old one at the commit, then mixed while refreshed but without metrics.json, then new
    assert mirrors[0] == old and mirrors[-1] == new
    assert all("metrics.json" not in m for m in mirrors[1:-1])


def test_a_crash_before_the_pointer_leaves_the_old_champion(tmp_path, two_versions, monkeypatch):
    old, _ = two_versions

    def crash(src, dst):
        raise OSError("worker lost")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        promote(tmp_path, "risk", NEW)
    assert artifacts.champion_version(tmp_path, "risk") == OLD
    assert snapshot(champion_dir(tmp_path, "risk")) == old == snapshot(champion_mirror(tmp_path, "risk"))


def test_a_crash_after_the_pointer_leaves_the_new_champion_and_promoting_again_repairs_the_mirror(
        tmp_path, two_versions, monkeypatch):
    _, new = two_versions
    real_copy, copies = shutil.copyfile, []

    def copy_then_crash(src, dst):
        copies.append(dst)
        if len(copies) == 2:
            raise OSError("worker lost")
        real_copy(src, dst)

    monkeypatch.setattr(shutil, "copyfile", copy_then_crash)
    with pytest.raises(OSError):
        promote(tmp_path, "risk", NEW)
    assert snapshot(champion_dir(tmp_path, "risk")) == new
    assert "metrics.json" not in snapshot(champion_mirror(tmp_path, "risk"))  # marked unfinished
    monkeypatch.setattr(shutil, "copyfile", real_copy)
    promote(tmp_path, "risk", NEW)
    assert snapshot(champion_mirror(tmp_path, "risk")) == new


@pytest.mark.parametrize("passed, no_promote, code", [(False, False, 1), (False, True, 0), (True, True, 0)])
def test_a_failed_gate_or_no_promote_leaves_the_pointer_alone(tmp_path, two_versions, passed, no_promote, code):
    old, _ = two_versions
    before = pointer_path(tmp_path, "risk").read_bytes()
    assert promote_if_passed(tmp_path, "risk", NEW, passed, "AUC 0.5", no_promote) == code
    assert pointer_path(tmp_path, "risk").read_bytes() == before
    assert snapshot(champion_dir(tmp_path, "risk")) == old == snapshot(champion_mirror(tmp_path, "risk"))


def test_a_passed_gate_promotes(tmp_path, two_versions):
    _, new = two_versions
    assert promote_if_passed(tmp_path, "risk", NEW, True, "AUC 0.9", no_promote=False) == 0
    assert artifacts.champion_version(tmp_path, "risk") == NEW and snapshot(champion_dir(tmp_path, "risk")) == new


def test_a_root_from_before_the_pointer_is_read_from_champion_then_promoted_through_the_pointer(tmp_path):
    legacy = champion_mirror(tmp_path, "risk")
    legacy.mkdir(parents=True)
    (legacy / "model.json").write_text("legacy")
    (legacy / "metrics.json").write_text("{}")
    assert champion_dir(tmp_path, "risk") == legacy and artifacts.champion_version(tmp_path, "risk") is None
    new = snapshot(make_version(tmp_path, NEW, {"model.json": "new"}))
    promote(tmp_path, "risk", NEW)
    assert champion_dir(tmp_path, "risk") == artifacts.version_dir(tmp_path, "risk", NEW)
    assert snapshot(legacy) == new


def test_only_a_finished_run_is_promoted(tmp_path):
    assert not champion_dir(tmp_path, "risk").exists()  # nothing promoted yet: readers find no champion
    artifacts.version_dir(tmp_path, "risk", NEW).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no finished run"):
        promote(tmp_path, "risk", NEW)
    assert not pointer_path(tmp_path, "risk").exists()


def test_file_prefix_is_accepted(tmp_path):
    make_version(tmp_path, NEW, {"model.json": "new"})
    promote(f"file://{tmp_path}", "risk", NEW)
    assert champion_dir(f"file://{tmp_path}", "risk") == artifacts.version_dir(tmp_path, "risk", NEW)
