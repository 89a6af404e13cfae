"""Shared fixtures of the unit tests."""

from __future__ import annotations

import subprocess

import pytest

# --- Kubernetes OpenAPI schemas (k8s_openapi.py, ci/fetch-k8s-schemas.sh) ----


@pytest.fixture(scope="session")
def k8s_schemas() -> list[str]:
    """The pinned Kubernetes versions, with their schemas in the cache.

    Runs ci/fetch-k8s-schemas.sh (Go module proxy only) when a file is
    missing, and fails the tests with its output when that does not work.
    """
    import k8s_openapi

    versions: list[str] = k8s_openapi.schema_versions()
    if k8s_openapi.missing_schema_files(versions):
        script = k8s_openapi.FETCH_SCRIPT
        try:
            proc = subprocess.run(
                ["bash", str(script), *versions],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            output, rc = proc.stdout + proc.stderr, proc.returncode
        except (OSError, subprocess.TimeoutExpired) as exc:
            output, rc = str(exc), -1
        missing = k8s_openapi.missing_schema_files(versions)
        if rc != 0 or missing:
            pytest.fail(
                f"could not fetch the Kubernetes schemas: {script.name} exited {rc}; "
                f"still missing: {', '.join(map(str, missing)) or 'nothing'}\n"
                f"{output[-4000:]}",
                pytrace=False,
            )
    return versions


# --- end of Kubernetes OpenAPI schemas ---------------------------------------
