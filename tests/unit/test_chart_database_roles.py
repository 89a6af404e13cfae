"""With the bundled PostgreSQL the app connects as a role of its own (reads and writes
rows only); the migrate Job alone gets the owner's credentials, to migrate and grant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.helm import PROFILES, one, pod_spec, pod_templates, render, render_error

LOCAL = next(p for p in PROFILES if p.stem == "local")
OWNER_ENV = {"DATABASE_OWNER_USER", "DATABASE_OWNER_PASSWORD"}


def env_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each pod template's first container environment, by `Kind/name`."""
    envs: dict[str, dict[str, Any]] = {}
    for obj in pod_templates(objects):
        container = pod_spec(obj)["containers"][0]
        entries = {e["name"]: e for e in container.get("env", [])}
        envs[f"{obj['kind']}/{obj['metadata']['name']}"] = entries
    return envs


def config_map_user(objects: list[dict[str, Any]]) -> str:
    user: str = one(objects, "ConfigMap", "saga-saga-stack")["data"]["DATABASE_USER"]
    return user


def test_the_app_connects_as_its_own_role_and_only_migrate_is_the_owner() -> None:
    objects = render([LOCAL], values={"loadGenerator.enabled": True})
    assert config_map_user(objects) == "saga_app"
    envs = env_of(objects)
    migrate = envs.pop("Job/saga-saga-stack-migrate")
    assert migrate["DATABASE_USER"]["value"] == "saga_app"
    assert migrate["DATABASE_OWNER_USER"]["value"] == "saga"
    owner_password = migrate["DATABASE_OWNER_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert owner_password == {"name": "saga-postgresql", "key": "password"}
    app_pods = [name for name, env in envs.items() if "DATABASE_PASSWORD" in env]
    assert "Deployment/saga-saga-stack" in app_pods
    for name in app_pods:
        ref = envs[name]["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "saga-postgresql", "key": "app-password"}, name
        assert not OWNER_ENV & set(envs[name]), f"{name} has the owner's credentials"
    secret = one(objects, "Secret", "saga-postgresql")
    assert {"password", "app-password"} <= set(secret["data"])
    assert secret["data"]["password"] != secret["data"]["app-password"]


def test_without_an_app_role_the_app_connects_as_the_owner() -> None:
    objects = render([LOCAL], values={"postgresql.auth.appUsername": ""})
    assert config_map_user(objects) == "saga"
    envs = env_of(objects)
    assert not OWNER_ENV & set(envs["Job/saga-saga-stack-migrate"])
    ref = envs["Deployment/saga-saga-stack"]["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["key"] == "password"
    assert "app-password" not in one(objects, "Secret", "saga-postgresql")["data"]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: Path(p).stem)
def test_every_profile_gives_the_owner_to_migrate_alone(profile: Path) -> None:
    """The bundled database in every profile but production, whose external one has an
    owner too (values/production.yaml)."""
    objects = render([profile])
    envs = env_of(objects)
    assert set(envs.pop("Job/saga-saga-stack-migrate")) >= OWNER_ENV
    assert not [name for name, env in envs.items() if OWNER_ENV & set(env)]


EXTERNAL = {
    "postgresql.enabled": False,
    "externalDatabase.host": "db.example.com",
    "externalDatabase.user": "saga_app",
    "externalDatabase.password": "app-secret",
}


def test_an_external_owner_migrates_and_the_app_connects_as_its_user() -> None:
    objects = render(
        values={
            **EXTERNAL,
            "externalDatabase.ownerUser": "saga",
            "externalDatabase.ownerPassword": "o",
        }
    )
    assert config_map_user(objects) == "saga_app"
    envs = env_of(objects)
    migrate = envs.pop("Job/saga-saga-stack-migrate")
    assert migrate["DATABASE_OWNER_USER"]["value"] == "saga"
    ref = migrate["DATABASE_OWNER_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "saga-saga-stack", "key": "database-owner-password"}
    assert not [name for name, env in envs.items() if OWNER_ENV & set(env)]
    secret = one(objects, "Secret", "saga-saga-stack")["data"]
    assert {"database-password", "database-owner-password"} <= set(secret)


def test_production_reads_the_owners_password_from_the_users_secret() -> None:
    production = next(p for p in PROFILES if p.stem == "production")
    migrate = env_of(render([production]))["Job/saga-saga-stack-migrate"]
    ref = migrate["DATABASE_OWNER_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "saga-credentials", "key": "database-owner-password"}
    assert migrate["DATABASE_USER"]["value"] == "saga_app"


def test_an_external_database_without_an_owner_migrates_as_the_apps_user() -> None:
    envs = env_of(render(values=EXTERNAL))
    assert not OWNER_ENV & set(envs["Job/saga-saga-stack-migrate"])


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"externalDatabase.ownerUser": "saga_app"}, "is externalDatabase.user"),
        ({"externalDatabase.ownerUser": "saga"}, "no owner password"),
    ],
)
def test_an_external_owner_that_cannot_work_is_refused(values: dict[str, str], named: str) -> None:
    message = render_error(values={**EXTERNAL, **values})
    assert "externalDatabase.ownerUser" in message and named in message


def test_the_app_role_cannot_be_the_owner() -> None:
    message = render_error(values={"postgresql.auth.appUsername": "saga"})
    assert "postgresql.auth.appUsername" in message and "postgresql.auth.username" in message


def test_an_app_role_that_is_no_identifier_is_refused() -> None:
    message = render_error(values={"postgresql.auth.appUsername": "Saga-App"})
    assert "appUsername" in message
