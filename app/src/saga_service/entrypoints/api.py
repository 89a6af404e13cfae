"""HTTP API (FastAPI). Commands: POST /orders, PUT /stock/{sku}. Queries: GET /orders,
/sagas (one, a page of them, counts per state), /stock. Bad input always gets a 4xx with a
message that says what is wrong."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry.trace import SpanKind
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saga_service import __version__
from saga_service.adapters.diagnosis import MISCONFIGURED
from saga_service.adapters.lock import LockUnavailable
from saga_service.adapters.postgres import queries
from saga_service.domain.order import (
    CUSTOMER_ID_MAX_LENGTH,
    CUSTOMER_ID_PATTERN,
    MAX_QUANTITY,
    MAX_UNIT_PRICE_CENTS,
    SKU_MAX_LENGTH,
    SKU_PATTERN,
    InvalidOrder,
    OrderItem,
    OrderStatus,
)
from saga_service.domain.saga import SagaState, order_status_for
from saga_service.entrypoints import saga_listing
from saga_service.entrypoints.api_auth import AuthFailed, write_guard
from saga_service.entrypoints.saga_listing import Timestamp
from saga_service.observability import metrics, spans, tracing
from saga_service.runtime import Runtime
from saga_service.service.commands import UnknownSku

log = logging.getLogger(__name__)

# --- models -------------------------------------------------------------------------------

# Items an order body may carry at most, whatever MAX_ORDER_ITEMS says: a bound on parsing.
# The document publishes min(MAX_ORDER_ITEMS, this) as maxItems.
ORDER_ITEMS_PARSE_LIMIT = 1000


def _integral(value: Any) -> Any:
    # JSON Schema counts 1.0 as an integer, so it stays one; everything else that is not an
    # int (true, "1", 1.5) is left to the strict check to refuse, as the document says.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# pydantic's lax mode turns true into 1 and "5" into 5; the document promises an integer.
JsonInt = Annotated[int, BeforeValidator(_integral), Strict()]

SkuPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=SKU_MAX_LENGTH,
        pattern=SKU_PATTERN.pattern,
        description="1-64 ASCII letters, digits, '.', '_', ':', '-'; begins with a letter or digit",
        examples=["SKU-1"],
    ),
]


class OrderItemIn(BaseModel):
    sku: str = Field(
        min_length=1,
        max_length=SKU_MAX_LENGTH,
        pattern=SKU_PATTERN.pattern,
        description="a SKU whose stock was set with PUT /stock/{sku}, at most once per order",
        examples=["SKU-1"],
    )
    quantity: JsonInt = Field(gt=0, le=MAX_QUANTITY, description="units, at least 1")
    unit_price_cents: JsonInt = Field(ge=0, le=MAX_UNIT_PRICE_CENTS)


class OrderIn(BaseModel):
    customer_id: str = Field(
        min_length=1,
        max_length=CUSTOMER_ID_MAX_LENGTH,
        pattern=CUSTOMER_ID_PATTERN.pattern,
        description="not blank, no NUL character. An id that begins with 'decline' makes the "
        "payment fail; one that begins with 'fail-confirm' makes the confirmation fail after "
        "the charge",
    )
    items: list[OrderItemIn] = Field(
        min_length=1,
        max_length=ORDER_ITEMS_PARSE_LIMIT,
        description="at most MAX_ORDER_ITEMS lines, each SKU once",
    )


class _Out(BaseModel):
    # Every field of an answer is always present, defaults included: say so in the document.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class OrderAccepted(_Out):
    order_id: uuid.UUID
    saga_id: uuid.UUID
    status: OrderStatus = OrderStatus.PENDING


class OrderItemOut(_Out):
    sku: str
    quantity: int
    unit_price_cents: int


class OrderOut(_Out):
    order_id: uuid.UUID
    saga_id: uuid.UUID
    status: OrderStatus
    customer_id: str
    total_cents: int
    items: list[OrderItemOut]


class SagaStepOut(_Out):
    step: str
    outcome: str
    from_state: str
    to_state: str
    detail: str | None
    executed_by: str | None
    at: datetime


class SagaOut(_Out):
    saga_id: uuid.UUID
    order_id: uuid.UUID
    state: SagaState
    order_status: OrderStatus
    steps: list[SagaStepOut]
    attempts: int
    failed_step: str | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    trace_id: str | None = Field(
        description="W3C trace id of the request that placed the order; every step's logs"
        " and spans carry it"
    )


class SagaSummaryOut(_Out):
    saga_id: uuid.UUID
    order_id: uuid.UUID
    customer_id: str
    state: SagaState
    order_status: OrderStatus
    attempts: int
    failed_step: str | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    duration_ms: int | None = Field(description="finished_at - created_at; null until final")


class SagaPageOut(_Out):
    items: list[SagaSummaryOut] = Field(description="newest first (created_at, then saga_id)")
    next_cursor: str | None = Field(
        description="pass as `cursor`, with the same filters, for the next (older) page; null "
        "on the last page",
        pattern=saga_listing.CURSOR_PATTERN.pattern,
    )


class SagaStateCounts(_Out):
    """One count per saga state, 0 when there is none."""

    RESERVING_STOCK: int
    CHARGING_PAYMENT: int
    CONFIRMING: int
    COMPLETED: int
    REFUNDING: int
    RELEASING_STOCK: int
    CANCELLING: int
    COMPENSATED: int


class SagaStatsOut(_Out):
    since: datetime | None = Field(description="counted are the sagas created at or after it")
    total: int
    counts: SagaStateCounts


class StockIn(BaseModel):
    quantity: JsonInt = Field(ge=0, le=1_000_000_000, description="units available for sale")


class StockOut(_Out):
    sku: str
    available: int
    reserved: int


class ErrorOut(BaseModel):
    """The body of every 4xx and 5xx answer of the API."""

    error: str = Field(description="a stable code; each response lists the codes it can carry")
    message: str = Field(description="what went wrong, for a person")
    detail: Any = Field(
        None,
        description="present for some codes: the field errors of invalid_request and "
        "malformed_json, the unknown SKUs of unknown_sku",
    )


# One model per set of codes a response can carry, so the document names them exactly.
class MalformedJson(ErrorOut):
    error: Literal["malformed_json"]


class PayloadTooLarge(ErrorOut):
    error: Literal["payload_too_large"]


class MethodNotAllowed(ErrorOut):
    error: Literal["method_not_allowed"]


class InvalidRequest(ErrorOut):
    error: Literal["invalid_request"]


class OrderRejected(ErrorOut):
    error: Literal["invalid_request", "invalid_order", "unknown_sku", "too_many_items"]


class NotFound(ErrorOut):
    error: Literal["not_found"]


class Unauthorized(ErrorOut):
    error: Literal["unauthorized"]


class Forbidden(ErrorOut):
    error: Literal["forbidden"]


class StockNotFound(ErrorOut):
    error: Literal["unknown_sku"]


class QueryUnavailable(ErrorOut):
    error: Literal["unavailable"]


class OrderUnavailable(ErrorOut):
    error: Literal["shutting_down", "unavailable"]


class StockUnavailable(ErrorOut):
    error: Literal["shutting_down", "lock_unavailable", "unavailable"]


Responses = dict[int | str, dict[str, Any]]


def _errors(*declared: tuple[int, type[ErrorOut], str]) -> Responses:
    """The error answers of one operation; 405 and 413 come from the routing and the body
    limit, which every path goes through."""
    responses: Responses = {
        405: {
            "model": MethodNotAllowed,
            "description": "method_not_allowed: a method this path does not serve",
            "headers": {
                "Allow": {
                    "description": "the methods this path serves (RFC 9110)",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        },
        413: {
            "model": PayloadTooLarge,
            "description": "payload_too_large: a request body over MAX_BODY_BYTES, announced "
            "by Content-Length or streamed",
        },
    }
    for status, model, description in declared:
        responses[status] = {"model": model, "description": description}
    return responses


def _link(operation_id: str, description: str, **link: Any) -> dict[str, Any]:
    return {"operationId": operation_id, "description": description, **link}


_QUERY_UNAVAILABLE = (503, QueryUnavailable, "unavailable: the database did not answer")
_BAD_ID = (422, InvalidRequest, "invalid_request: the id is not a UUID")
_BAD_QUERY = (422, InvalidRequest, "invalid_request: a query parameter breaks its schema")

StatesQuery = Annotated[
    list[SagaState] | None,
    Query(description="only sagas in these states (repeat the parameter for several)"),
]
CustomerQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=CUSTOMER_ID_MAX_LENGTH,
        pattern=CUSTOMER_ID_PATTERN.pattern,
        description="only this customer's sagas",
    ),
]
SinceQuery = Annotated[
    Timestamp | None, Query(description="created at or after this RFC 3339 date-time")
]
UntilQuery = Annotated[
    Timestamp | None, Query(description="created before this RFC 3339 date-time")
]
LimitQuery = Annotated[
    int, Query(ge=1, le=saga_listing.LIMIT_MAX, description="the most sagas on one page")
]
CursorQuery = Annotated[
    str | None,
    Query(
        pattern=saga_listing.CURSOR_PATTERN.pattern,
        description="next_cursor of the previous page (with the same filters)",
    ),
]


def _error(status: int, error: str, message: str, detail: Any = None) -> JSONResponse:
    body = ErrorOut(error=error, message=message, detail=detail).model_dump(exclude_none=True)
    return JSONResponse(status_code=status, content=body)


# --- middleware ---------------------------------------------------------------------------


class BodySizeLimit:
    """413 for bodies above the limit, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(scope, receive, send)
                    return
        seen = 0
        limit = self.max_bytes

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # FastAPI passes HTTPExceptions raised while reading the body through.
                    raise StarletteHTTPException(413, f"request body larger than {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(
            413, "payload_too_large", f"request body larger than {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


# Requests that get no exported span (they still get a trace context).
UNTRACED_PATHS = ("/healthz/", "/metrics")


class RequestContext:
    """The request's span (observability/spans.py), correlation id, per-route metrics and
    the response headers.

    `x-served-by` names the process (the pod, in Kubernetes) that answered, so a
    client can see how requests spread over replicas.
    """

    def __init__(self, app: ASGIApp, served_by: str, draining: Callable[[], bool]) -> None:
        self.app = app
        self.served_by = served_by.encode("latin-1", "replace")
        self.draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        method = scope.get("method", "GET")
        correlation = (
            headers.get("x-correlation-id")
            or headers.get("x-request-id")
            or tracing.new_correlation_id()
        )[:128]
        status = 500
        started = time.monotonic()
        path = str(scope.get("path", ""))
        span = spans.started(
            method,
            tracing.parse_traceparent(headers.get("traceparent")),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
            # probes and scrapes, several a second: in a trace store they would bury the sagas
            exported=not path.startswith(UNTRACED_PATHS),
        )

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [
                    (b"traceparent", request_span.trace.traceparent().encode()),
                    (b"x-correlation-id", correlation.encode("latin-1", "replace")),
                    (b"x-served-by", self.served_by),
                ]
                if self.draining():
                    # uvicorn closes the connection after this answer: the client's next
                    # request opens a new one, which reaches a pod that is not stopping.
                    extra.append((b"connection", b"close"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        with span as request_span, tracing.bound(correlation_id=correlation):
            try:
                await self.app(scope, receive, send_with_headers)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
                metrics.HTTP_DURATION.labels(method, route).observe(time.monotonic() - started)
                request_span.rename(f"{method} {route}")
                request_span.set({"http.route": route, "http.response.status_code": status})
                if status >= 500:
                    request_span.fail(f"answered {status}")


# --- the application ----------------------------------------------------------------------


def _validation_message(errors: list[Any]) -> tuple[int, str, str]:
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx", {})
            return 400, "malformed_json", f"request body is not valid JSON: {ctx.get('error', '')}"
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return 422, "invalid_request", "; ".join(parts)


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                methods |= route.methods
    return sorted(methods)


def create_app(runtime: Runtime) -> FastAPI:
    settings = runtime.settings
    app = FastAPI(
        title="saga-service",
        version=__version__,
        description="Order saga (reserve stock -> charge payment -> confirm, compensated in "
        "reverse on failure) over Postgres, Redis locks and Kafka. Every error answer is "
        "`{error, message, detail}`; bad input always gets a 4xx, never a 5xx.",
    )

    @app.exception_handler(RequestValidationError)
    async def _on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        status, code, message = _validation_message(errors)
        safe = [{k: e.get(k) for k in ("loc", "msg", "type")} for e in errors[:20]]
        return _error(status, code, message, safe)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            # Starlette's Allow names only the first route whose path matched; /stock/{sku}
            # is two routes (GET, PUT), and RFC 9110 wants every method the path serves.
            allowed = ", ".join(_allowed_methods(app, request.scope))
            response = _error(
                405, "method_not_allowed", f"{request.method} not allowed; allowed: {allowed}"
            )
            response.headers["Allow"] = allowed
            return response
        # FastAPI raises 400 for a body it cannot even decode (not UTF-8, say).
        code = {400: "malformed_json", 413: "payload_too_large", 404: "not_found"}
        response = _error(exc.status_code, code.get(exc.status_code, "http_error"), str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(AuthFailed)
    async def _on_auth(_: Request, exc: AuthFailed) -> JSONResponse:
        response = _error(exc.status, exc.error, exc.message)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(InvalidOrder)
    async def _on_invalid(_: Request, exc: InvalidOrder) -> JSONResponse:
        return _error(422, "invalid_order", str(exc))

    @app.exception_handler(UnknownSku)
    async def _on_unknown_sku(_: Request, exc: UnknownSku) -> JSONResponse:
        return _error(422, "unknown_sku", str(exc), {"skus": exc.skus})

    @app.exception_handler(LockUnavailable)
    async def _on_lock(_: Request, exc: LockUnavailable) -> JSONResponse:
        return _error(503, "lock_unavailable", str(exc))

    @app.exception_handler(Exception)
    async def _on_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return _error(503, "unavailable", f"temporary failure: {type(exc).__name__}")

    tokens = settings.write_tokens()
    # With API_TOKENS set, the write endpoints take a bearer token (and say so).
    writes_guarded = write_guard(tokens)
    auth_errors = (
        (
            (401, Unauthorized, "unauthorized: no `Authorization: Bearer <token>`"),
            (403, Forbidden, "forbidden: a token that is not one of API_TOKENS"),
        )
        if tokens
        else ()
    )

    @app.post(
        "/orders",
        operation_id="place_order",
        dependencies=writes_guarded,
        status_code=202,
        response_model=OrderAccepted,
        responses={
            202: {
                "description": "accepted; the saga runs in the background",
                "links": {
                    "GetOrder": _link(
                        "get_order",
                        "the order, to poll for its outcome",
                        parameters={"order_id": "$response.body#/order_id"},
                    ),
                    "GetSaga": _link(
                        "get_saga",
                        "the order's saga and its steps",
                        parameters={"saga_id": "$response.body#/saga_id"},
                    ),
                    "ListCustomerSagas": _link(
                        "list_sagas",
                        "the sagas of the order's customer, this one among them",
                        parameters={"customer_id": "$request.body#/customer_id"},
                    ),
                },
            },
            **_errors(
                *auth_errors,
                (400, MalformedJson, "malformed_json: the body is not valid JSON"),
                (
                    422,
                    OrderRejected,
                    "invalid_request: a field breaks the schema; invalid_order: a SKU "
                    "appears on more than one line; unknown_sku: a SKU has no stock set "
                    "(detail.skus names them); too_many_items: more than MAX_ORDER_ITEMS",
                ),
                (
                    503,
                    OrderUnavailable,
                    "shutting_down: this instance is stopping, retry; unavailable: the "
                    "database did not answer",
                ),
            ),
        },
    )
    async def place_order(body: OrderIn) -> OrderAccepted | JSONResponse:
        """Accept an order and start its saga; poll GET /orders/{order_id} for the outcome."""
        if runtime.stopping.is_set():
            # Draining still takes orders (they are stored before the answer, and any pod
            # runs their sagas); only a runtime that has let go of its pool refuses.
            return _error(503, "shutting_down", "this instance is shutting down; retry")
        if len(body.items) > settings.max_order_items:
            return _error(
                422,
                "too_many_items",
                f"too many items: {len(body.items)} > {settings.max_order_items}",
            )
        items = [OrderItem(i.sku, i.quantity, i.unit_price_cents) for i in body.items]
        placed = await runtime.commands.place_order(body.customer_id, items)
        return OrderAccepted(order_id=placed.order_id, saga_id=placed.saga_id)

    @app.get(
        "/orders/{order_id}",
        operation_id="get_order",
        response_model=OrderOut,
        responses={
            200: {
                "description": "the order",
                "links": {
                    "GetSaga": _link(
                        "get_saga",
                        "the order's saga",
                        parameters={"saga_id": "$response.body#/saga_id"},
                    )
                },
            },
            **_errors(
                (404, NotFound, "not_found: no order with this id"), _BAD_ID, _QUERY_UNAVAILABLE
            ),
        },
    )
    async def get_order(order_id: uuid.UUID) -> OrderOut | JSONResponse:
        assert runtime.pool is not None
        async with runtime.pool.connection() as conn:
            row = await queries.get_order(conn, order_id)
        if row is None:
            return _error(404, "not_found", f"no order {order_id}")
        return OrderOut(**row)

    # Before /sagas/{saga_id}, which would take "stats" for an id and refuse it.
    @app.get(
        "/sagas/stats",
        operation_id="saga_stats",
        response_model=SagaStatsOut,
        responses={
            200: {"description": "how many sagas are in each state"},
            **_errors(_BAD_QUERY, _QUERY_UNAVAILABLE),
        },
    )
    async def saga_stats(since: SinceQuery = None) -> SagaStatsOut:
        assert runtime.pool is not None
        async with runtime.pool.connection() as conn:
            counts = await queries.saga_counts(conn, since)
        return SagaStatsOut(
            since=since,
            total=sum(counts.values()),
            counts=SagaStateCounts(**{state.value: n for state, n in counts.items()}),
        )

    @app.get(
        "/sagas",
        operation_id="list_sagas",
        response_model=SagaPageOut,
        responses={
            200: {"description": "one page of sagas, newest first"},
            **_errors(_BAD_QUERY, _QUERY_UNAVAILABLE),
        },
    )
    async def list_sagas(
        state: StatesQuery = None,
        customer_id: CustomerQuery = None,
        since: SinceQuery = None,
        until: UntilQuery = None,
        limit: LimitQuery = saga_listing.LIMIT_DEFAULT,
        cursor: CursorQuery = None,
    ) -> SagaPageOut:
        """Recent sagas, filtered; `since` after `until` is an empty window, not an error."""
        where = queries.SagaFilter(frozenset(state or ()), customer_id, since, until)
        after = saga_listing.decode_cursor(cursor) if cursor is not None else None
        assert runtime.pool is not None
        async with runtime.pool.connection() as conn:
            # One row more than asked says whether there is a next page.
            rows = await queries.list_sagas(conn, where, after, limit + 1)
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        return SagaPageOut(
            items=[
                SagaSummaryOut(**row, order_status=order_status_for(SagaState(row["state"])))
                for row in page
            ],
            next_cursor=saga_listing.encode_cursor(
                queries.SagaPosition(last["created_at"], last["saga_id"])
            )
            if last is not None
            else None,
        )

    @app.get(
        "/sagas/{saga_id}",
        operation_id="get_saga",
        response_model=SagaOut,
        responses={
            200: {
                "description": "the saga, its steps so far and the order's status",
                "links": {
                    "GetOrder": _link(
                        "get_order",
                        "the saga's order",
                        parameters={"order_id": "$response.body#/order_id"},
                    )
                },
            },
            **_errors(
                (404, NotFound, "not_found: no saga with this id"), _BAD_ID, _QUERY_UNAVAILABLE
            ),
        },
    )
    async def get_saga(saga_id: uuid.UUID) -> SagaOut | JSONResponse:
        assert runtime.pool is not None
        async with runtime.pool.connection() as conn:
            row = await queries.saga_view(conn, saga_id)
        if row is None:
            return _error(404, "not_found", f"no saga {saga_id}")
        state = SagaState(row["state"])
        trace = tracing.parse_traceparent(row["traceparent"])
        return SagaOut(
            saga_id=row["saga_id"],
            order_id=row["order_id"],
            state=state,
            order_status=order_status_for(state),
            steps=[SagaStepOut(**{**s, "at": s.pop("created_at")}) for s in row["steps"]],
            attempts=row["attempts"],
            failed_step=row["failed_step"],
            last_error=row["last_error"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            trace_id=trace.trace_id if trace else None,
        )

    @app.put(
        "/stock/{sku}",
        operation_id="put_stock",
        dependencies=writes_guarded,
        response_model=StockOut,
        responses={
            200: {
                "description": "the stock level after the change",
                "links": {
                    "GetStock": _link(
                        "get_stock", "the same SKU", parameters={"sku": "$response.body#/sku"}
                    ),
                    # What makes an order acceptable is state (the SKU has stock), which
                    # no schema can say; this link lets a client (or a fuzzer) follow it.
                    "PlaceOrder": _link(
                        "place_order",
                        "an order for one unit of this SKU",
                        requestBody={
                            "items": [
                                {
                                    "sku": "$response.body#/sku",
                                    "quantity": 1,
                                    "unit_price_cents": 100,
                                }
                            ]
                        },
                    ),
                },
            },
            **_errors(
                *auth_errors,
                (400, MalformedJson, "malformed_json: the body is not valid JSON"),
                (
                    422,
                    InvalidRequest,
                    "invalid_request: the SKU does not match its pattern or the body breaks "
                    "the schema",
                ),
                (
                    503,
                    StockUnavailable,
                    "shutting_down: this instance is stopping, retry; lock_unavailable: the "
                    "SKU's lock (Redis) could not be taken; unavailable: the database did "
                    "not answer",
                ),
            ),
        },
    )
    async def put_stock(sku: SkuPath, body: StockIn) -> StockOut | JSONResponse:
        """Set the units available for sale (units reserved by sagas are kept apart)."""
        if runtime.stopping.is_set():
            # Draining still takes orders (they are stored before the answer, and any pod
            # runs their sagas); only a runtime that has let go of its pool refuses.
            return _error(503, "shutting_down", "this instance is shutting down; retry")
        level = await runtime.commands.set_stock(sku, body.quantity)
        return StockOut(sku=level.sku, available=level.available, reserved=level.reserved)

    @app.get(
        "/stock/{sku}",
        operation_id="get_stock",
        response_model=StockOut,
        responses={
            200: {"description": "the stock level"},
            **_errors(
                (404, StockNotFound, "unknown_sku: no stock was ever set for this SKU"),
                (422, InvalidRequest, "invalid_request: the SKU does not match its pattern"),
                _QUERY_UNAVAILABLE,
            ),
        },
    )
    async def get_stock(sku: SkuPath) -> StockOut | JSONResponse:
        assert runtime.pool is not None
        async with runtime.pool.connection() as conn:
            level = await queries.get_stock(conn, sku)
        if level is None:
            return _error(404, "unknown_sku", f"unknown sku: {sku}")
        return StockOut(sku=level.sku, available=level.available, reserved=level.reserved)

    @app.get("/healthz/live", include_in_schema=False)
    async def live() -> JSONResponse:
        if runtime.dead_tasks:
            return JSONResponse(
                status_code=500, content={"status": "dead", "tasks": runtime.dead_tasks}
            )
        return JSONResponse(content={"status": "ok"})

    @app.get("/healthz/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        if runtime.shutting_down:
            return JSONResponse(status_code=503, content={"status": "shutting_down"})
        checks = await runtime.check_dependencies()
        failing = [name for name, result in checks.items() if result != "ok"]
        misconfigured = [n for n, result in checks.items() if result.startswith(MISCONFIGURED)]
        # Ready means "can serve the API". Every command and query needs PostgreSQL; Redis
        # and Kafka only move sagas along (the outbox keeps new orders until Kafka is back,
        # steps wait for their locks), so losing them degrades the pod but must not empty
        # the Service: tied to them, a lost Kafka node failed 81 % of requests. A
        # misconfigured one (a password, a CA, TLS on one side only) is another matter:
        # waiting does not heal it, and a pod that took orders it can never finish must
        # not look Ready, whichever dependency it is.
        if "postgres" in failing or misconfigured:
            return JSONResponse(
                status_code=503,
                content={
                    "status": "misconfigured" if misconfigured else "unavailable",
                    "failing": failing,
                    "checks": checks,
                },
            )
        status = "degraded" if failing else "ok"
        return JSONResponse(content={"status": status, "failing": failing, "checks": checks})

    @app.get("/config", include_in_schema=False)
    async def config() -> JSONResponse:
        # Operational, like /healthz and /metrics: outside the API document.
        return JSONResponse(content=runtime.describe_config())

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # MAX_ORDER_ITEMS is a setting, so the models cannot carry it; the document must.
        if app.openapi_schema is None:
            items = build_openapi()["components"]["schemas"]["OrderIn"]["properties"]["items"]
            items["maxItems"] = min(settings.max_order_items, ORDER_ITEMS_PARSE_LIMIT)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    # Added last = outermost: the request context wraps the size limit, so 413s are counted.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        RequestContext,
        served_by=runtime.instance_id,
        draining=lambda: runtime.shutting_down,
    )
    return app
