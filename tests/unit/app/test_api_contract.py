"""The OpenAPI document and the answers that need no service (pure): the published
patterns mean what the domain checks, every operation declares its errors and links, and
405/400/422 carry what the document says. The live contract is fuzzed by
tests/integration/test_api_contract_fuzz.py."""

from __future__ import annotations

import re
import types
from typing import Annotated, Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import StringConstraints, TypeAdapter, ValidationError
from saga_service.domain.order import (
    CUSTOMER_ID_PATTERN,
    SKU_PATTERN,
    InvalidOrder,
    validate_customer_id,
    validate_sku,
)
from saga_service.entrypoints.api import create_app
from saga_service.settings import Settings

WHITESPACE = [chr(i) for i in range(0x110000) if chr(i).isspace()]
EDGE_CHARACTERS = [*WHITESPACE, "\x00", "\x1b", "\u200b", "\ufeff", "a", "é", "-", "\n"]


def app(**settings: Any) -> FastAPI:
    values = {
        "database_host": "unused",
        "database_password": "unused",
        "redis_host": "unused",
        "kafka_bootstrap_servers": "unused",
        **settings,
    }
    # create_app reads only the settings, a name and whether the runtime is shutting down
    # until a request reaches a handler.
    runtime = types.SimpleNamespace(
        settings=Settings(**values), instance_id="unit", shutting_down=False
    )
    return create_app(runtime)  # type: ignore[arg-type]


def accepted(validate: Any, value: str) -> bool:
    try:
        validate(value)
    except (InvalidOrder, ValidationError):
        return False
    return True


def pydantic_pattern(pattern: re.Pattern[str]) -> Any:
    # pydantic validates `pattern` with Rust's regex engine, not Python's re.
    return TypeAdapter(Annotated[str, StringConstraints(pattern=pattern.pattern)]).validate_python


@pytest.mark.parametrize(
    "value",
    [
        *EDGE_CHARACTERS,
        *(c * 3 for c in WHITESPACE),
        " alice ",
        "a\x00",
        "\x00",
        "x\u3000",
        "decline-1",
    ],
)
def test_the_customer_id_pattern_is_the_domain_rule(value: str) -> None:
    domain = accepted(validate_customer_id, value)
    assert bool(CUSTOMER_ID_PATTERN.fullmatch(value)) == domain, repr(value)
    assert accepted(pydantic_pattern(CUSTOMER_ID_PATTERN), value) == domain, repr(value)


@pytest.mark.parametrize(
    "value",
    [*EDGE_CHARACTERS, "SKU-1", "SKU-1\n", "-lead", "a" * 64, "a" * 65, "A.b_c:d-1", "a b"],
)
def test_the_sku_pattern_is_the_domain_rule(value: str) -> None:
    domain = accepted(validate_sku, value)
    assert accepted(pydantic_pattern(SKU_PATTERN), value) == domain, repr(value)


def test_a_trailing_newline_is_not_part_of_a_valid_sku() -> None:
    # re's `$` matches before a final newline; the domain must not take that from it.
    with pytest.raises(InvalidOrder):
        validate_sku("SKU-1\n")


def test_every_operation_declares_its_errors_and_allow_on_405() -> None:
    doc = app().openapi()
    expected = {
        ("post", "/orders"): {"202", "400", "405", "413", "422", "503"},
        ("get", "/orders/{order_id}"): {"200", "404", "405", "413", "422", "503"},
        ("get", "/sagas/{saga_id}"): {"200", "404", "405", "413", "422", "503"},
        ("get", "/sagas"): {"200", "405", "413", "422", "503"},
        ("get", "/sagas/stats"): {"200", "405", "413", "422", "503"},
        ("put", "/stock/{sku}"): {"200", "400", "405", "413", "422", "503"},
        ("get", "/stock/{sku}"): {"200", "404", "405", "413", "422", "503"},
    }
    found = {
        (m, p): set(op["responses"]) for p, ops in doc["paths"].items() for m, op in ops.items()
    }
    assert found == expected
    schemas = doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"]["405"]["headers"]["Allow"]["required"] is True
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    name = response["content"]["application/json"]["schema"]["$ref"]
                    error = schemas[name.rsplit("/", 1)[1]]
                    assert error["required"] == ["error", "message"], (method, path, status)
                    assert error["properties"]["error"].get("enum") or error["properties"][
                        "error"
                    ].get("const"), (method, path, status)


def test_links_lead_from_a_stock_change_to_an_order_and_on_to_its_saga() -> None:
    doc = app().openapi()
    operation_ids = {op["operationId"] for ops in doc["paths"].values() for op in ops.values()}
    links = {
        (op["operationId"], name): link
        for ops in doc["paths"].values()
        for op in ops.values()
        for response in op["responses"].values()
        for name, link in response.get("links", {}).items()
    }
    assert {link["operationId"] for link in links.values()} <= operation_ids
    assert links[("place_order", "GetOrder")]["parameters"] == {
        "order_id": "$response.body#/order_id"
    }
    assert links[("place_order", "GetSaga")]["parameters"] == {"saga_id": "$response.body#/saga_id"}
    assert links[("place_order", "ListCustomerSagas")]["parameters"] == {
        "customer_id": "$request.body#/customer_id"
    }
    order = links[("put_stock", "PlaceOrder")]["requestBody"]
    assert order["items"][0]["sku"] == "$response.body#/sku"


def test_the_document_publishes_max_order_items() -> None:
    doc = app(max_order_items=7).openapi()
    assert doc["components"]["schemas"]["OrderIn"]["properties"]["items"]["maxItems"] == 7
    assert (
        app(max_order_items=5000).openapi()["components"]["schemas"]["OrderIn"]["properties"][
            "items"
        ]["maxItems"]
        == 1000
    )


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/stock/SKU-1", "GET, PUT"),
        ("OPTIONS", "/stock/SKU-1", "GET, PUT"),
        ("DELETE", "/orders", "POST"),
        ("PATCH", "/orders/00000000-0000-0000-0000-000000000000", "GET"),
        ("TRACE", "/sagas/x", "GET"),
        ("POST", "/sagas", "GET"),
        ("DELETE", "/sagas/stats", "GET"),
    ],
)
def test_405_names_every_method_of_the_path(method: str, path: str, allow: str) -> None:
    response = TestClient(app()).request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        (
            {"content": b"\xff\xfe{", "headers": {"content-type": "application/json"}},
            400,
            "malformed_json",
        ),
        ({"json": {"quantity": True}}, 422, "invalid_request"),
        ({"json": {"quantity": "5"}}, 422, "invalid_request"),
        ({"json": {"quantity": 1.5}}, 422, "invalid_request"),
    ],
)
def test_a_stock_body_that_breaks_the_schema_is_refused(
    kwargs: dict[str, Any], status: int, error: str
) -> None:
    response = TestClient(app()).put("/stock/SKU-1", **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


@pytest.mark.parametrize("customer_id", ["a\x00b", "   ", "\u3000", "x" * 129])
def test_a_customer_id_the_database_or_the_domain_would_refuse_is_a_422(customer_id: str) -> None:
    body = {
        "customer_id": customer_id,
        "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 1}],
    }
    response = TestClient(app()).post("/orders", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"
