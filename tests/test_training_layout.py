"""Layering of training/: nothing imports from the CLI module (it only parses arguments and calls the library)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            out.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_nothing_imports_from_the_training_cli():
    """training/cli.py is a leaf: the library (config, pipeline, evaluate, opd...) and benchmarks never import it."""
    offenders = []
    for d in ("training", "adasr_mm", "adapters", "apps", "benchmarks", "tests"):
        for f in (ROOT / d).rglob("*.py"):
            mods = _imports(f)
            if "adasr_mm.training.cli" in mods or (f.parent.name == "training" and ".cli" in mods):
                offenders.append(str(f.relative_to(ROOT)))
    assert offenders == []


def test_one_causal_lm_loader():
    """Only adasr_mm/models.py calls AutoModelForCausalLM.from_pretrained (policy, teacher, training)."""
    callers = [str(f.relative_to(ROOT)) for d in ("training", "adasr_mm", "benchmarks")
               for f in (ROOT / d).rglob("*.py") if "AutoModelForCausalLM.from_pretrained(" in f.read_text()]
    assert callers == ["adasr_mm/models.py"]
