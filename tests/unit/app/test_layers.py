"""The packages of app/src are layers: each may import only the layers below it, so the tree
keeps saying what depends on what (app/README.md, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import saga_console
import saga_loadgen
import saga_service

SRC = Path(saga_service.__file__).parent.parent
assert Path(saga_loadgen.__file__).parent.parent == SRC
assert Path(saga_console.__file__).parent.parent == SRC

# What each layer may import of the two packages (a prefix also covers its submodules).
# Anything that matches no rule may import anything: runtime.py, which wires it all, and
# the entry points, which drive it.
ALLOWED: dict[str, tuple[str, ...]] = {
    "saga_service.domain": ("saga_service.domain",),
    "saga_service.observability": ("saga_service.observability",),
    "saga_service.settings": (),
    "saga_service.adapters": (
        "saga_service.adapters",
        "saga_service.domain",
        "saga_service.observability",
        "saga_service.settings",
    ),
    "saga_service.service": (
        "saga_service.service",
        "saga_service.adapters",
        "saga_service.domain",
        "saga_service.observability",
    ),
    "saga_loadgen": ("saga_loadgen",),
    "saga_console": ("saga_console",),
}
# Modules a layer may import by that exact name, none of their submodules: the load
# generator and the console are clients (of the HTTP API, of Prometheus) and take just the
# distribution's version.
ALSO_EXACTLY: dict[str, set[str]] = {
    "saga_loadgen": {"saga_service"},
    "saga_console": {"saga_service"},
}
OURS = ("saga_service", "saga_loadgen", "saga_console")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] in OURS}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _allowed(importer: str, imported: str) -> bool:
    layer = max((layer for layer in ALLOWED if _within(importer, layer)), key=len, default=None)
    if layer is None:
        return True
    if imported in ALSO_EXACTLY.get(layer, set()):
        return True
    return any(_within(imported, prefix) for prefix in ALLOWED[layer])


MODULES = sorted(p for package in OURS for p in (SRC / package).rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_a_layer_imports_only_the_layers_below_it(path: Path) -> None:
    importer = _module_name(path)
    wrong = sorted(name for name in _imports(path) if not _allowed(importer, name))
    assert wrong == [], f"{importer} must not import {', '.join(wrong)}"


def test_nothing_of_the_service_reaches_the_console() -> None:
    # The console will run as its own process; the service must not grow a need for it.
    importers = {
        _module_name(path)
        for path in MODULES
        if not _module_name(path).startswith("saga_console")
        and any(_within(name, "saga_console") for name in _imports(path))
    }
    assert importers == set()


def _third_party_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_job_queue_adapter_speaks_bullmq() -> None:
    # The queue library stays behind one adapter, so replacing it touches one file.
    importers = {_module_name(path) for path in MODULES if "bullmq" in _third_party_imports(path)}
    assert importers == {"saga_service.adapters.job_queue"}


def test_the_domain_imports_no_io_library() -> None:
    io_libraries = {"bullmq", "redis", "psycopg", "psycopg_pool", "aiokafka", "httpx", "fastapi"}
    for path in MODULES:
        if _within(_module_name(path), "saga_service.domain"):
            assert not _third_party_imports(path) & io_libraries, _module_name(path)


def test_only_the_cli_reaches_the_load_generator() -> None:
    importers = {
        _module_name(path)
        for path in MODULES
        if _module_name(path).startswith("saga_service")
        and any(_within(name, "saga_loadgen") for name in _imports(path))
    }
    assert importers == {"saga_service.entrypoints.cli"}
