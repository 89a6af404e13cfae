"""The HTTP contract, fuzzed: schemathesis generates requests from the reference OpenAPI
document and checks every answer of a real app process against it, with every check on:
examples, coverage (boundary values, undeclared methods), fuzzing (valid and invalid data)
and the stateful phase, which follows the document's links (PUT /stock -> POST /orders ->
GET /orders/{id}, GET /sagas/{id} and GET /sagas?customer_id=).

The document the requests come from is always the reference one, built from
saga_service.entrypoints.api in this process with the default settings, so the test says whether an
app meets *our* contract, not whether it agrees with itself. By default the target is a
fresh reference app on loopback (its own /openapi.json must then be that very document);
with SAGA_CONTRACT_URL=http://host:port the same run goes against any image instead (one
started with the default MAX_ORDER_ITEMS and MAX_BODY_BYTES). See docs/app-contract.md.

Bounded and repeatable: a fixed seed, derandomized, no example database, a fixed number of
examples per operation and of stateful scenarios. The number of generated cases is printed
and written to contract-fuzz.json in the pytest tmp dir.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import os
import time
import types
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from saga_service.entrypoints.api import create_app
from saga_service.settings import Settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.result import Ok

from tests.integration.app_processes import make_stack

CONTRACT_URL_ENV = "SAGA_CONTRACT_URL"
SEED = 19
# Per operation, for the fuzzing phase; examples and coverage add their own fixed cases.
MAX_EXAMPLES = 40
STATEFUL_SCENARIOS = 100
STATEFUL_MAX_STEPS = 10
REQUEST_TIMEOUT = 10.0
# A whole test (setup included) must not take longer; one usually takes seconds.
TEST_TIME_LIMIT = 120

pytestmark = pytest.mark.timeout(TEST_TIME_LIMIT)

# For data the schema calls valid, schemathesis expects one of these statuses by default.
# POST /orders may also answer 422: whether an order is acceptable depends on state no
# schema can state (each SKU's stock must have been set) and on a rule JSON Schema cannot
# express (each SKU on one line only). The document declares both 422s, and
# `order_refusals_are_declared` below allows exactly those two, so any other 422 fails.
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
CONFIG = {
    "seed": SEED,
    "request-timeout": REQUEST_TIMEOUT,
    "generation": {
        "mode": "all",
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "database": "none",
    },
    "checks": {"enabled": True},
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": True, "max-steps": STATEFUL_MAX_STEPS},
    },
    "operations": [
        {
            "include-name": "POST /orders",
            "checks": {
                "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}
            },
        }
    ],
}

AnyCase = schemathesis.Case[Any]

# How many cases reached the app, per operation and phase.
GENERATED: collections.Counter[str] = collections.Counter()
# The schema-valid orders refused, by error code (what order_refusals_are_declared saw).
ORDER_REFUSALS: collections.Counter[str] = collections.Counter()


@schemathesis.check
def order_refusals_are_declared(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: AnyCase
) -> bool | None:
    """A schema-valid order may be refused only for an unknown or a repeated SKU."""
    if case.operation.label != "POST /orders" or response.status_code != 422:
        return None
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    body = response.json()
    ORDER_REFUSALS[str(body.get("error"))] += 1
    if body.get("error") == "unknown_sku":
        return True
    if body.get("error") == "invalid_order" and "more than once" in body.get("message", ""):
        return True
    raise AssertionError(f"a schema-valid order was refused: {body}")


def reference_document() -> dict[str, Any]:
    """The contract: the reference app's document with the default settings. Building the
    app starts nothing; it reads only the settings and a name from its runtime."""
    settings = Settings(
        database_host="unused",
        database_password="unused",
        redis_host="unused",
        kafka_bootstrap_servers="unused",
        # Settings also read the environment; the contract is the default.
        max_order_items=Settings.model_fields["max_order_items"].default,
    )
    runtime = types.SimpleNamespace(settings=settings, instance_id="contract-reference")
    return create_app(runtime).openapi()  # type: ignore[arg-type]


def is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@pytest.fixture(scope="module")
def contract_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of the app under test: SAGA_CONTRACT_URL, else a fresh reference app."""
    given = os.environ.get(CONTRACT_URL_ENV, "").strip()
    if given:
        yield given.rstrip("/")
        return
    # Services are asked for only here, so a run against another image needs none of them.
    postgres = request.getfixturevalue("postgres")
    kafka = request.getfixturevalue("kafka")
    redis = request.getfixturevalue("redis")
    with (
        pytest.MonkeyPatch.context() as mp,
        make_stack(postgres, kafka, redis.env(), tmp_path_factory.mktemp("contract")) as stack,
    ):
        # Requests honour *_PROXY; the reference app is on loopback and so is every request.
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        (app,) = stack.start(1)
        assert is_loopback(app.url), app.url
        yield app.url


@pytest.fixture(scope="module", autouse=True)
def record_generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    started = time.monotonic()
    yield
    summary = {
        "seed": SEED,
        "max_examples_per_operation": MAX_EXAMPLES,
        "stateful_scenarios": STATEFUL_SCENARIOS,
        "generated": sum(GENERATED.values()),
        "by_operation_and_phase": dict(sorted(GENERATED.items())),
        "schema_valid_orders_refused": dict(sorted(ORDER_REFUSALS.items())),
        "seconds": round(time.monotonic() - started, 1),
    }
    path = Path(tmp_path_factory.getbasetemp()) / "contract-fuzz.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\ncontract fuzz: {summary['generated']} cases in {summary['seconds']} s -> {path}")


def test_the_reference_app_serves_the_contract(contract_target: str) -> None:
    served = httpx.get(contract_target + "/openapi.json", timeout=REQUEST_TIMEOUT).json()
    reference = reference_document()
    if os.environ.get(CONTRACT_URL_ENV):
        # Another image may word its document its own way; the operations must be ours.
        def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
            return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}

        assert operations(served) == operations(reference)
    else:
        assert served == reference


# Built at import from the reference document, so collection needs no app; the target's
# base URL is handed to every call.
schema = schemathesis.openapi.from_dict(
    reference_document(), config=schemathesis.Config.from_dict(CONFIG)
)


def test_every_check_is_on() -> None:
    load_all_checks()
    names = CHECKS.get_all_names()
    assert "order_refusals_are_declared" in names
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"an operation of the spec does not load: {result.err()}"
        operation = result.ok()
        config = schema.config.checks_config_for(operation=operation)
        off = [name for name in names if not config.get_by_name(name=name).enabled]
        assert off == [], f"checks off for {operation.label}: {off}"


@schema.parametrize()
def test_each_operation_meets_the_contract(case: AnyCase, contract_target: str) -> None:
    phase = case.meta.phase.name.value if case.meta else "explicit"
    GENERATED[f"{case.operation.label} / {phase}"] += 1
    case.call_and_validate(base_url=contract_target)


def test_call_sequences_following_the_links_meet_the_contract(contract_target: str) -> None:
    answered: collections.Counter[tuple[str, int]] = collections.Counter()

    class Counted(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: AnyCase) -> dict[str, Any]:
            return {"base_url": contract_target}

        def before_call(self, case: AnyCase) -> None:
            GENERATED[f"{case.operation.label} / stateful"] += 1
            super().before_call(case)

        def after_call(self, response: schemathesis.Response, case: AnyCase) -> None:
            answered[(case.operation.label, response.status_code)] += 1
            super().after_call(response, case)

    hypothesis.seed(SEED)(Counted)
    Counted.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_MAX_STEPS,
            derandomize=True,
            database=None,
            deadline=None,
        )
    )
    # The links were followed with real data: a SKU set, ordered, and its saga read back.
    assert answered[("POST /orders", 202)] > 0, answered
    assert answered[("GET /orders/{order_id}", 200)] > 0, answered
    assert answered[("GET /sagas/{saga_id}", 200)] > 0, answered
    assert answered[("GET /sagas", 200)] > 0, answered
