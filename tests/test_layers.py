"""The layering contract ([tool.importlinter] in pyproject.toml, docs/ARCHITECTURE.md) holds,
and it fails when an import breaks it: the same check, on a copy of the tree with one bad
import added, must name the broken contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sora_cli", "workers", "services", "sora_encoder")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    # lint-imports puts its working directory first on sys.path: it reads the tree at `root`.
    return subprocess.run(
        [str(exe), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300
    )


def _copy_tree(dst: Path) -> Path:
    """The four packages' Python files and pyproject.toml (the contract), nothing else."""
    for name in PACKAGES:
        shutil.copytree(
            ROOT / name,
            dst / name,
            ignore=lambda d, names: [
                n for n in names if not n.endswith(".py") and not (Path(d) / n).is_dir()
            ],
        )
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_the_tree_keeps_every_contract():
    run = _lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        # the library reaching up into the service
        ("sora_encoder/files.py", "import services.store", "Packages:"),
        # the job sender importing the task side
        ("services/jobs/dispatch.py", "import workers.tasks", "Packages:"),
        # a lazy import inside a function counts as much as one at the top
        (
            "services/store/db.py",
            "def _up():\n    from services.index import IndexSet\n",
            "services in layers",
        ),
        # the library importing a database driver
        ("sora_encoder/model/sora.py", "import sqlalchemy", "touches no database"),
    ],
)
def test_a_bad_import_breaks_the_contract(tmp_path, module, bad_import, contract):
    tree = _copy_tree(tmp_path / "tree")
    with (tree / module).open("a", encoding="utf-8") as f:
        f.write(f"\n{bad_import}\n")
    run = _lint_imports(tree)
    assert run.returncode != 0, run.stdout
    broken = [line for line in run.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), run.stdout


def _cycles(*packages: str) -> list[list[str]]:
    """The import circles among the packages' modules (strongly connected components of
    more than one module; lazy and TYPE_CHECKING imports count)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph(*packages, cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan, recursive: the graph is a few hundred modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others():
    assert _cycles(*PACKAGES) == []
