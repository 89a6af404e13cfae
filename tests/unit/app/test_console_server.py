"""saga_console.server against two small ASGI upstreams standing in for the app and
Prometheus: only the listed GET paths with their documented parameters go through, every
write is 405 and reaches nobody, upstream trouble comes back as JSON errors, and
/api/dashboards serves the chart's real dashboards."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import saga_console
from helm import CHART
from saga_console.server import ConsoleSettings, create_app

APP_URL = "http://app.test"
PROMETHEUS_URL = "http://prometheus.test"
SAGA = "6f1c1b52-9c4e-4b6c-8f0e-2a1d3c4b5e6f"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Upstreams:
    """One ASGI app for both upstreams (told apart by host); it records every request it
    gets and answers JSON, or the status set in `status`."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, list[tuple[str, str]]]] = []
        self.status = 200
        self.content_type = b"application/json"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        host = dict(scope["headers"])[b"host"].decode()
        query = httpx.QueryParams(scope["query_string"].decode())
        self.seen.append((host, scope["method"], scope["path"], list(query.multi_items())))
        body = json.dumps({"host": host, "path": scope["path"]}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [(b"content-type", self.content_type)],
            }
        )
        await send({"type": "http.response.body", "body": body})


def settings(tmp_path: Path, **more: Any) -> ConsoleSettings:
    return ConsoleSettings(
        console_app_url=APP_URL,
        console_prometheus_url=PROMETHEUS_URL,
        console_dashboards_dir=tmp_path,
        console_namespace="shop",
        console_job="shop-saga-stack",
        **more,
    )


def call(
    upstreams: Upstreams,
    tmp_path: Path,
    method: str,
    url: str,
    **more: Any,
) -> httpx.Response:
    app = create_app(settings(tmp_path, **more), transport=httpx.ASGITransport(app=upstreams))

    async def run() -> httpx.Response:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://console"
            ) as client,
        ):
            return await client.request(method, url)

    return asyncio.run(run())


@pytest.fixture
def upstreams() -> Upstreams:
    return Upstreams()


def test_saga_listing_forwards_only_the_documented_parameters(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    answer = call(
        upstreams,
        tmp_path,
        "GET",
        "/api/sagas?state=COMPLETED&state=COMPENSATED&customer_id=c1&limit=5&cursor=x"
        "&since=2026-12-04T20:00:00Z&until=2026-12-04T21:00:00Z&evil=1&path=/orders",
    )
    assert answer.status_code == 200
    assert upstreams.seen == [
        (
            "app.test",
            "GET",
            "/sagas",
            [
                ("state", "COMPLETED"),
                ("state", "COMPENSATED"),
                ("customer_id", "c1"),
                ("limit", "5"),
                ("cursor", "x"),
                ("since", "2026-12-04T20:00:00Z"),
                ("until", "2026-12-04T21:00:00Z"),
            ],
        )
    ]


def test_stats_and_one_saga(upstreams: Upstreams, tmp_path: Path) -> None:
    assert call(upstreams, tmp_path, "GET", "/api/sagas/stats?since=s&state=X").status_code == 200
    assert call(upstreams, tmp_path, "GET", f"/api/sagas/{SAGA.upper()}?x=1").status_code == 200
    assert upstreams.seen == [
        ("app.test", "GET", "/sagas/stats", [("since", "s")]),
        # Re-spelled from the parsed UUID, parameters dropped.
        ("app.test", "GET", f"/sagas/{SAGA}", []),
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/api/sagas/..%2F..%2Forders",
        "/api/sagas/not-a-uuid",
        "/api/sagas/../orders",
        "/api/orders",
        "/api/stock/sku-1",
        "/api/prometheus/api/v1/admin/tsdb/delete_series",
        "/api/prometheus/series",
        "/api/prometheus/label/job/values",
        "/sagas",
    ],
)
def test_no_other_upstream_path_is_reachable(
    upstreams: Upstreams, tmp_path: Path, path: str
) -> None:
    answer = call(upstreams, tmp_path, "GET", path)
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"
    assert upstreams.seen == []


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "path", ["/api/sagas", "/api/sagas/stats", f"/api/sagas/{SAGA}", "/api/prometheus/query"]
)
def test_writes_are_405_and_reach_nobody(
    upstreams: Upstreams, tmp_path: Path, method: str, path: str
) -> None:
    answer = call(upstreams, tmp_path, method, path)
    assert answer.status_code == 405
    assert answer.json()["error"] == "method_not_allowed"
    assert "GET" in answer.headers["allow"]
    assert upstreams.seen == []


def test_prometheus_gets_only_its_read_parameters_with_variables_filled(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    query = 'sum(rate(x{namespace="$namespace", job="$job"}[$__rate_interval]))'
    params = httpx.QueryParams(
        {"query": query, "start": "1", "end": "61", "step": "15", "job": 'a"b', "match[]": "up"}
    )
    assert call(upstreams, tmp_path, "GET", f"/api/prometheus/query_range?{params}").is_success
    assert call(upstreams, tmp_path, "GET", "/api/prometheus/query?query=up&time=5").is_success
    assert upstreams.seen == [
        (
            "prometheus.test",
            "GET",
            "/api/v1/query_range",
            [
                # $job from the page (its quote escaped), $namespace the default.
                ("query", 'sum(rate(x{namespace="shop", job="a\\"b"}[60s]))'),
                ("start", "1"),
                ("end", "61"),
                ("step", "15"),
            ],
        ),
        ("prometheus.test", "GET", "/api/v1/query", [("query", "up"), ("time", "5")]),
    ]


def test_unknown_variable_is_a_400_not_a_query(upstreams: Upstreams, tmp_path: Path) -> None:
    answer = call(
        upstreams, tmp_path, "GET", "/api/prometheus/query?query=up%7Bpod%3D%22%24pod%22%7D"
    )
    assert answer.status_code == 400
    assert "$pod" in answer.json()["message"]
    assert upstreams.seen == []


def test_upstream_status_and_body_pass_through(upstreams: Upstreams, tmp_path: Path) -> None:
    upstreams.status = 404
    answer = call(upstreams, tmp_path, "GET", f"/api/sagas/{SAGA}")
    assert answer.status_code == 404
    assert answer.json() == {"host": "app.test", "path": f"/sagas/{SAGA}"}


def test_upstream_without_json_is_a_502(upstreams: Upstreams, tmp_path: Path) -> None:
    upstreams.content_type = b"text/html"
    answer = call(upstreams, tmp_path, "GET", "/api/sagas")
    assert answer.status_code == 502
    assert answer.json()["error"] == "upstream_not_json"


def test_unreachable_upstream_is_a_502(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    app = create_app(settings(tmp_path), transport=httpx.MockTransport(refuse))

    async def run() -> list[httpx.Response]:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as c,
        ):
            return [await c.get("/api/sagas"), await c.get("/healthz/ready")]

    sagas, ready = asyncio.run(run())
    assert sagas.status_code == 502 and sagas.json()["error"] == "upstream_unreachable"
    assert "the app" in sagas.json()["message"]
    assert ready.status_code == 503 and ready.json()["error"] == "app_unreachable"


def test_upstream_timeout_is_a_504_naming_it(tmp_path: Path) -> None:
    # httpx raises this when the configured timeout runs out (ASGITransport keeps none).
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    app = create_app(
        settings(tmp_path, console_upstream_timeout_seconds=0.2),
        transport=httpx.MockTransport(slow),
    )

    async def run() -> httpx.Response:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as c,
        ):
            return await c.get("/api/prometheus/query?query=up")

    answer = asyncio.run(run())
    assert answer.status_code == 504
    assert answer.json() == {
        "error": "upstream_timeout",
        "message": "Prometheus did not answer within 0.2 s",
    }


def test_ready_follows_the_app(upstreams: Upstreams, tmp_path: Path) -> None:
    assert call(upstreams, tmp_path, "GET", "/healthz/ready").status_code == 200
    upstreams.status = 503
    assert call(upstreams, tmp_path, "GET", "/healthz/ready").status_code == 503
    assert call(upstreams, tmp_path, "GET", "/healthz/live").status_code == 200
    assert [s[2] for s in upstreams.seen] == ["/healthz/ready", "/healthz/ready"]


def test_dashboards_are_the_charts_own(upstreams: Upstreams, tmp_path: Path) -> None:
    sources = sorted((CHART / "dashboards").glob("*.json"))
    assert sources
    for source in sources:
        shutil.copy(source, tmp_path / source.name)
    (tmp_path / "broken.json").write_text("{")
    answer = call(upstreams, tmp_path, "GET", "/api/dashboards")
    assert answer.status_code == 200
    body = answer.json()
    assert [b["file"] for b in body["dashboards"]] == [s.name for s in sources]
    assert body["errors"] == [{"file": "broken.json", "error": body["errors"][0]["error"]}]
    assert body["errors"][0]["error"].startswith("not JSON")
    assert body["defaults"] == {"namespace": "shop", "job": "shop-saga-stack"}
    for board, source in zip(body["dashboards"], sources, strict=True):
        raw = json.loads(source.read_text())
        assert board["uid"] == raw["uid"]
        kinds = {p["kind"] for p in board["panels"]}
        assert "timeseries" in kinds
        assert all(p["targets"] for p in board["panels"] if p["kind"] != "unsupported")
        assert {v["name"] for v in board["variables"]} >= {"namespace", "job"}


def test_page_and_assets_are_served(upstreams: Upstreams, tmp_path: Path) -> None:
    page = call(upstreams, tmp_path, "GET", "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/console.js" in page.text
    assert call(upstreams, tmp_path, "GET", "/static/console.js").status_code == 200
    assert call(upstreams, tmp_path, "POST", "/").status_code == 405


def test_a_saga_id_that_is_no_uuid_never_reaches_the_app(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    assert uuid.UUID(SAGA)
    assert call(upstreams, tmp_path, "GET", "/api/sagas/stats2").status_code == 404
    assert upstreams.seen == []


def test_page_names_only_files_that_exist_or_the_asset_script_copies(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    page = call(upstreams, tmp_path, "GET", "/").text
    referenced = set(re.findall(r'(?:src|href)="/static/([^"]+)"', page))
    script = (CHART.parents[1] / "ci" / "console-assets.sh").read_text()
    vendored = {f"vendor/uplot/{name}" for name in ("uPlot.iife.min.js", "uPlot.min.css")}
    assert all(name.split("/")[-1] in script for name in vendored)
    static = Path(saga_console.__file__).parent / "static"
    assert referenced - vendored == {"console.css", "console.js"}
    assert all((static / name).is_file() for name in referenced - vendored)
    assert vendored <= referenced


def test_writes_to_static_files_are_405(upstreams: Upstreams, tmp_path: Path) -> None:
    answer = call(upstreams, tmp_path, "PUT", "/static/console.js")
    assert answer.status_code == 405
    assert answer.json()["error"] == "method_not_allowed"
