"""The layout shows the architecture: no import cycles (function-local imports included), the core packages free of
I/O and orchestration, deciding free of the simulator, nothing under retention/ importing airflow, and the daily
path free of the simulator's and training's dependencies."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from retention.config import REPO_ROOT

PACKAGE = REPO_ROOT / "retention"
CORE = ("retention.scoring", "retention.deciding", "retention.messages")
EDGES_FORBIDDEN = [
    # (importer prefix, imported prefix, why)
    ("retention.deciding", "retention.simulation", "the production decide stage must not load the simulator"),
    *((core, io, "the core takes frames and returns frames; I/O sits at the edges")
      for core in CORE for io in ("retention.infra", "retention.pipeline", "retention.cli")),
    ("retention.scoring", "retention.deciding", "scores are inputs to decisions, not the other way round"),
    ("retention.datasets", "retention.deciding", "data sets do not decide"),
    ("retention", "airflow", "only dags/ and plugins/ know Airflow"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (function-local imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} | 
            {m for m in imports_of(path) if not m.startswith("retention")}
            for name, path in modules.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each a cycle in the import graph."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    assert cycles(graph()) == []


def test_cycle_detection_finds_a_planted_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]


@pytest.mark.parametrize("importer,imported,why", EDGES_FORBIDDEN)
def test_no_forbidden_import(importer, imported, why):
    broken = sorted(f"{src} -> {dst}" for src, dsts in graph().items() if src.startswith(importer)
                    for dst in dsts if dst == imported or dst.startswith(imported + "."))
    assert broken == [], why


def test_every_package_is_one_the_readme_names():
    packages = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert packages == ["datasets", "deciding", "infra", "messages", "pipeline", "rlhf", "scoring", "serve",
                        "simulation"]
    readme = (REPO_ROOT / "README.md").read_text()
    assert all(f"retention/{p}/" in readme for p in packages)


def test_the_daily_path_loads_neither_the_simulator_nor_training_code():
    code = ("import sys; import retention.pipeline.daily, retention.deciding.policy; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('gymnasium', 'trl', 'peft') "
            "or m.startswith(('retention.simulation', 'retention.datasets.seed', 'retention.rlhf'))); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == "[]"
