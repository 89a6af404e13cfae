"""The console's HTTP server: the page, the chart's dashboards as panels, and read-only
forwarding of a closed list of GET endpoints to the app and to Prometheus.

Forwarding is an allow-list, not a proxy: each route names its one upstream path, and only
the documented query parameters are copied (everything else is dropped), so no request to
the console can reach another upstream path, method or parameter. Every method but GET
gets 405.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from saga_console.dashboards import DashboardError, load_dashboard, substitute

log = logging.getLogger("saga_console")

PACKAGE_STATIC = Path(__file__).parent / "static"

# The documented query parameters of the app's listing (docs/app-contract.md).
SAGA_LIST_PARAMS = ("state", "customer_id", "since", "until", "limit", "cursor")
SAGA_STATS_PARAMS = ("since",)
PROMETHEUS_PARAMS = ("query", "start", "end", "step", "time")
# A response larger than this is not a page of sagas or a console's query: refuse it
# rather than hold it in memory.
MAX_UPSTREAM_BYTES = 8 * 1024 * 1024


def serve(settings: ConsoleSettings) -> int:
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host="0.0.0.0",
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        timeout_graceful_shutdown=5,
    )
    return 0


class ConsoleSettings(BaseSettings):
    """From the environment (CONSOLE_* and PORT); see `saga-console --help`."""

    model_config = SettingsConfigDict(extra="ignore")

    # Longer than a proxy's idle timeout (see the app's HTTP_KEEP_ALIVE_SECONDS).
    http_keep_alive_seconds: int = Field(default=620, ge=1)
    console_app_url: str = Field(default="http://127.0.0.1:8080")
    console_prometheus_url: str = Field(default="http://127.0.0.1:9090")
    console_dashboards_dir: Path = Field(default=Path("/etc/saga-console/dashboards"))
    # Empty: the page shipped in the package (uPlot then comes from its vendor/ directory).
    console_static_dir: Path | None = None
    console_namespace: str = "default"
    console_job: str = "saga-stack"
    console_refresh_seconds: int = Field(default=10, ge=1, le=3600)
    console_upstream_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    port: int = Field(default=8080, ge=1, le=65535)


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def _params(request: Request, allowed: Iterable[str]) -> list[tuple[str, str]]:
    # multi_items keeps repeated parameters (state=A&state=B); anything not allowed is
    # dropped, never passed on.
    names = set(allowed)
    return [(k, v) for k, v in request.query_params.multi_items() if k in names]


def create_app(
    settings: ConsoleSettings, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """The console. `transport` replaces the network for tests (one for both upstreams)."""
    timeout = httpx.Timeout(settings.console_upstream_timeout_seconds)
    clients: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        clients["app"] = httpx.AsyncClient(
            base_url=settings.console_app_url, timeout=timeout, transport=transport
        )
        clients["prometheus"] = httpx.AsyncClient(
            base_url=settings.console_prometheus_url, timeout=timeout, transport=transport
        )
        try:
            yield
        finally:
            for client in clients.values():
                await client.aclose()

    app = FastAPI(
        title="saga-stack console",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return JSONResponse(
                {"error": "method_not_allowed", "message": "the console is read-only"},
                status_code=405,
                headers={"Allow": "GET"},
            )
        return _error(
            exc.status_code, "not_found" if exc.status_code == 404 else "error", str(exc.detail)
        )

    async def forward(upstream: str, path: str, params: list[tuple[str, str]]) -> Response:
        name = {"app": "the app", "prometheus": "Prometheus"}[upstream]
        try:
            async with clients[upstream].stream(
                "GET",
                path,
                params=tuple(params),
                headers={"accept": "application/json"},
            ) as answer:
                body = bytearray()
                async for chunk in answer.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_UPSTREAM_BYTES:
                        return _error(
                            502,
                            "upstream_too_large",
                            f"{name} answered over {MAX_UPSTREAM_BYTES} bytes",
                        )
        except httpx.TimeoutException:
            return _error(504, "upstream_timeout", f"{name} did not answer within {timeout.read} s")
        except httpx.HTTPError as exc:
            return _error(502, "upstream_unreachable", f"{name}: {type(exc).__name__}: {exc}")
        if not answer.headers.get("content-type", "").startswith("application/json"):
            return _error(
                502, "upstream_not_json", f"{name} answered {answer.status_code} without JSON"
            )
        # The upstream's own status and JSON error body ({"error", "message"} from the app,
        # {"status": "error", "error"} from Prometheus) are passed on as they are.
        return Response(bytes(body), status_code=answer.status_code, media_type="application/json")

    @app.get("/api/sagas")
    async def sagas(request: Request) -> Response:
        return await forward("app", "/sagas", _params(request, SAGA_LIST_PARAMS))

    @app.get("/api/sagas/stats")
    async def saga_stats(request: Request) -> Response:
        return await forward("app", "/sagas/stats", _params(request, SAGA_STATS_PARAMS))

    @app.get("/api/sagas/{saga_id}")
    async def saga(saga_id: str) -> Response:
        # Parsed, then re-spelled: nothing but a UUID ever lands in the upstream path.
        try:
            parsed = uuid.UUID(saga_id)
        except ValueError:
            return _error(404, "not_found", "a saga id is a UUID")
        return await forward("app", f"/sagas/{parsed}", [])

    def promql(request: Request) -> list[tuple[str, str]] | JSONResponse:
        # The page sends a panel's expression as the dashboard has it; the variables are
        # filled in here with dashboards.substitute (values escaped inside PromQL strings,
        # Grafana's interval rules), so that the console and Grafana query alike.
        params = _params(request, PROMETHEUS_PARAMS)
        values = {
            "namespace": request.query_params.get("namespace") or settings.console_namespace,
            "job": request.query_params.get("job") or settings.console_job,
        }
        try:
            step = float(request.query_params.get("step") or settings.console_refresh_seconds)
            return [(k, substitute(v, values, step) if k == "query" else v) for k, v in params]
        except ValueError as exc:
            return _error(400, "bad_query", str(exc))

    @app.get("/api/prometheus/query_range")
    async def query_range(request: Request) -> Response:
        params = promql(request)
        if isinstance(params, Response):
            return params
        return await forward("prometheus", "/api/v1/query_range", params)

    @app.get("/api/prometheus/query")
    async def query(request: Request) -> Response:
        params = promql(request)
        if isinstance(params, Response):
            return params
        return await forward("prometheus", "/api/v1/query", params)

    @app.get("/api/dashboards")
    async def dashboards() -> Response:
        return JSONResponse(dashboards_payload(settings))

    @app.get("/api/config")
    async def config() -> Response:
        return JSONResponse(
            {
                "namespace": settings.console_namespace,
                "job": settings.console_job,
                "refreshSeconds": settings.console_refresh_seconds,
            }
        )

    @app.get("/healthz/live")
    async def live() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/healthz/ready")
    async def ready() -> Response:
        try:
            answer = await clients["app"].get("/healthz/ready")
        except httpx.HTTPError as exc:
            return _error(503, "app_unreachable", f"the app: {type(exc).__name__}: {exc}")
        if answer.status_code != 200:
            return _error(503, "app_not_ready", f"the app answered {answer.status_code}")
        return JSONResponse({"status": "ok"})

    static = settings.console_static_dir or PACKAGE_STATIC

    @app.get("/")
    async def page() -> Response:
        return FileResponse(static / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=static, check_dir=False), name="static")
    return app


def dashboards_payload(settings: ConsoleSettings) -> dict[str, Any]:
    """Every dashboard file in the mounted directory, translated; a file that cannot be
    read is listed with its error instead of failing the others."""
    boards: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    directory = settings.console_dashboards_dir
    # A ConfigMap volume holds each key as a symlink into ..data/; the glob sees the keys.
    files = sorted(directory.glob("*.json")) if directory.is_dir() else []
    for path in files:
        try:
            board = load_dashboard(path.read_bytes())
        except (OSError, DashboardError) as exc:
            errors.append({"file": path.name, "error": str(exc)})
            continue
        boards.append(
            {
                "file": path.name,
                "uid": board.uid,
                "title": board.title,
                "refresh": board.refresh,
                "variables": [
                    {"name": v.name, "kind": v.kind, "label": v.label, "current": v.current}
                    for v in board.variables
                ],
                "panels": [
                    {
                        "id": p.id,
                        "title": p.title,
                        "kind": p.kind.value,
                        "grid": {"x": p.grid.x, "y": p.grid.y, "w": p.grid.w, "h": p.grid.h},
                        "unit": p.unit,
                        "description": p.description,
                        "unsupported_reason": p.unsupported_reason,
                        "targets": [
                            {"ref_id": t.ref_id, "expr": t.expr, "legend": t.legend_format}
                            for t in p.targets
                            if not t.hidden
                        ],
                    }
                    for p in board.panels
                    if p.grafana_type != "row"
                ],
            }
        )
    return {
        "dashboards": boards,
        "errors": errors,
        "defaults": {"namespace": settings.console_namespace, "job": settings.console_job},
    }
