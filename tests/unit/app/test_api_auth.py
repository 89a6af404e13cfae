"""API_TOKENS: the write endpoints take a bearer token when tokens are set, and the OpenAPI
document says so; nothing changes when none is set. The live path (a real service) is in
tests/integration/test_app_flows.py."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from saga_service.entrypoints.api import create_app
from saga_service.settings import Settings

TOKENS = ["a" * 32, "rotated-" + "b" * 24]
ORDER = {"customer_id": "c-1", "items": [{"sku": "S-1", "quantity": 1, "unit_price_cents": 1}]}
WRITES = ("place_order", "put_stock")


def settings(**values: Any) -> Settings:
    return Settings(
        database_host="unused",
        database_password="unused",
        redis_host="unused",
        kafka_bootstrap_servers="unused",
        **values,
    )


def app(**values: Any) -> FastAPI:
    # A runtime that is stopping: a request that gets past the token check is answered
    # 503 shutting_down by the handler itself, without a database.
    stopping = asyncio.Event()
    stopping.set()
    runtime = types.SimpleNamespace(
        settings=settings(**values), instance_id="unit", stopping=stopping, shutting_down=False
    )
    return create_app(runtime)  # type: ignore[arg-type]


def operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for path in doc["paths"].values() for op in path.values()}


def test_without_tokens_writes_are_open_and_the_document_asks_for_nothing() -> None:
    service = app()
    doc = service.openapi()
    assert "securitySchemes" not in doc.get("components", {})
    for name, op in operations(doc).items():
        assert "security" not in op, name
        assert not {"401", "403"} & set(op["responses"]), name
    answer = TestClient(service).post("/orders", json=ORDER)
    assert answer.status_code == 503 and answer.json()["error"] == "shutting_down"


def test_with_tokens_only_the_writes_declare_the_bearer_scheme_and_its_errors() -> None:
    doc = app(api_tokens=",".join(TOKENS)).openapi()
    assert doc["components"]["securitySchemes"]["apiToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "one of the service's API_TOKENS, as `Authorization: Bearer <token>`",
    }
    for name, op in operations(doc).items():
        if name in WRITES:
            assert op["security"] == [{"apiToken": []}], name
            assert {"401", "403"} <= set(op["responses"]), name
        else:
            assert "security" not in op, name


@pytest.mark.parametrize(
    ("header", "status", "error"),
    [
        (None, 401, "unauthorized"),
        ("Basic " + "a" * 32, 401, "unauthorized"),
        ("Bearer", 401, "unauthorized"),
        ("Bearer " + "c" * 32, 403, "forbidden"),
        ("Bearer " + TOKENS[0][:-1], 403, "forbidden"),
        ("Bearer " + TOKENS[0], 503, "shutting_down"),
        ("bearer " + TOKENS[1], 503, "shutting_down"),
    ],
)
def test_a_write_needs_one_of_the_tokens(header: str | None, status: int, error: str) -> None:
    client = TestClient(app(api_tokens="\n".join(TOKENS)))
    headers = {"Authorization": header} if header else {}
    for method, path, body in (("POST", "/orders", ORDER), ("PUT", "/stock/S-1", {"quantity": 1})):
        answer = client.request(method, path, json=body, headers=headers)
        assert (answer.status_code, answer.json()["error"]) == (status, error), (method, header)
        assert ("WWW-Authenticate" in answer.headers) == (status == 401)


def test_the_token_is_checked_before_the_body_is_validated() -> None:
    client = TestClient(app(api_tokens=TOKENS[0]))
    assert client.post("/orders", json={"customer_id": ""}).status_code == 401
    assert client.put("/stock/S-1", json={"quantity": -1}).status_code == 401
    assert client.get("/openapi.json").status_code == 200


def test_short_tokens_are_refused_without_being_echoed() -> None:
    with pytest.raises(ValidationError) as raised:
        settings(api_tokens=f"{TOKENS[0]},short-secret")
    # What the service prints of a bad configuration (entrypoints/cli.py): each error's text.
    messages = " ".join(error["msg"] for error in raised.value.errors())
    assert "API_TOKENS: 1 token(s) shorter than 16" in messages
    assert "short-secret" not in messages


def test_tokens_are_separated_by_commas_or_new_lines() -> None:
    assert settings(api_tokens=f" {TOKENS[0]} ,\n{TOKENS[1]}\n").write_tokens() == TOKENS
    assert settings().write_tokens() == []
