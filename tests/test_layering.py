"""The import rules of DESIGN.md, enforced by a walk over every module's imports.

- only pipelines/ imports apache_beam; only model/ imports transformers/accelerate;
  only dags/ imports airflow;
- annotate/ and embed/ import neither Beam nor pipelines/; llark/ imports no project package;
- model/ reads shards through pipelines.schema only;
- dags/ imports no heavy library at module level;
- pipelines/__init__.py imports nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("llark", "pipelines", "annotate", "embed", "model", "dags")
HEAVY = ("apache_beam", "torch", "transformers", "accelerate", "madmom", "essentia",
         "jukebox", "librosa", "pyarrow", "numpy")


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def modules(package: str):
    return sorted((REPO / package).rglob("*.py"))


def roots(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_only_pipelines_imports_beam():
    for pkg in PACKAGES:
        if pkg == "pipelines":
            continue
        for m in modules(pkg):
            assert "apache_beam" not in roots(imports(m)), m


def test_only_model_imports_transformers_and_accelerate():
    for pkg in PACKAGES:
        if pkg == "model":
            continue
        for m in modules(pkg):
            bad = roots(imports(m)) & {"transformers", "accelerate"}
            assert not bad, f"{m} imports {bad}"


def test_only_dags_imports_airflow():
    for pkg in PACKAGES:
        if pkg == "dags":
            continue
        for m in modules(pkg):
            assert "airflow" not in roots(imports(m)), m


def test_libraries_do_not_import_pipelines():
    for pkg in ("annotate", "embed"):
        for m in modules(pkg):
            bad = roots(imports(m)) & {"pipelines", "model", "dags"}
            assert not bad, f"{m} imports {bad}"
    for m in modules("llark"):
        bad = roots(imports(m)) & {"pipelines", "annotate", "embed", "model", "dags"}
        assert not bad, f"{m} imports {bad}"


def test_model_reads_shards_through_schema_only():
    for m in modules("model"):
        project = {n for n in imports(m) if n.split(".")[0] == "pipelines"}
        assert project <= {"pipelines.schema", "pipelines"}, f"{m} imports {project}"


def test_dags_have_no_heavy_imports_at_top_level():
    for m in modules("dags"):
        bad = roots(imports(m, top_level_only=True)) & set(HEAVY)
        assert not bad, f"{m} imports {bad} at module level"


def test_pipelines_init_imports_nothing():
    assert not imports(REPO / "pipelines" / "__init__.py")
