"""The charts' README values tables are generated, and must match values.yaml."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "ci" / "chart-readme.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_readme", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_committed_readmes_match_the_values_comments() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_generator_flags_an_undocumented_key(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("# -- documented\na: 1\nb:\n  c: true\n")
    entries, undocumented = _generator().parse(values)
    assert [e.path for e in entries] == ["a"]
    assert undocumented == ["b.c"]


def test_generator_documents_nested_keys_with_defaults(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        'image:\n  # -- the tag,\n  # on two lines\n  tag: "1.0"\n# -- whole map\nres:\n  cpu: 1\n'
    )
    generator = _generator()
    entries, undocumented = generator.parse(values)
    assert [(e.path, e.description) for e in entries] == [
        ("image.tag", "the tag, on two lines"),
        ("res", "whole map"),
    ]
    assert undocumented == []
    assert '| `res` | object | `{"cpu":1}` | whole map |' in generator.table(entries)
