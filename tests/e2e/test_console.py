"""The console in a real browser: Debian's chromium, headless, driven by Playwright, on the
console of the session's release through `kubectl port-forward` (as a user opens it).

A saga placed by the test is found through the filters and its timeline shows the steps in
order (a declined one its compensations); the dashboards draw at least one panel from
Prometheus. Screenshots go to $SAGA_STACK_RESULTS/screenshots/.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.cluster import RELEASE, in_cluster, port_forward, wait_for
from tests.e2e.releases import RESULTS

CONSOLE_SERVICE = f"{RELEASE}-saga-stack-console"
SCREENSHOTS = RESULTS / "screenshots"
# Chromium's own calls home are refused by this network, many at a time: keep them off.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail(
            "no chromium on PATH (nor $CHROMIUM): ci/install-services.sh installs Debian's; "
            "the console's browser tests cannot run without it",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def console_url(release: str) -> Iterator[str]:
    with port_forward(release, CONSOLE_SERVICE) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"{request.node.name}.png", full_page=True)
        context.close()
    assert errors == [], f"the page threw: {errors}"


def _place_orders(release: str, client: str, customers: list[str]) -> dict[str, str]:
    """Places one order per customer and waits until each is final; order status by customer."""
    return dict(
        in_cluster(
            release,
            client,
            f"""
            call("PUT", "/stock/console-sku", {{"quantity": 100}})
            placed = []
            for customer in {customers!r}:
                _, body, _ = call("POST", "/orders", {{"customer_id": customer, "items": [
                    {{"sku": "console-sku", "quantity": 1, "unit_price_cents": 250}}]}})
                placed.append((customer, body["order_id"]))
            print(json.dumps({{c: wait_final(o) for c, o in placed}}))
            """,
        )
    )


def _timeline(page: Page, console_url: str, customer: str) -> list[str]:
    """Opens the sagas view filtered on `customer`, clicks its saga; the timeline's steps."""
    page.goto(console_url + "/#sagas")
    page.fill("#filter-customer", customer)
    page.click("#filters button[type=submit]")
    rows = page.locator("#sagas-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(customer)
    short_id = rows.first.locator("code").inner_text()
    rows.first.click()
    # The view keeps the previous timeline until this one has loaded.
    expect(page.locator("#timeline-id")).to_contain_text(short_id)
    return [text.split()[0] for text in page.locator("#timeline-steps li").all_inner_texts()]


def test_a_saga_and_a_compensated_one_show_their_steps_in_order(
    release: str, client: str, console_url: str, page: Page
) -> None:
    tag = secrets.token_hex(3)
    ok, declined = f"console-{tag}", f"decline-console-{tag}"
    assert _place_orders(release, client, [ok, declined]) == {
        ok: "CONFIRMED",
        declined: "CANCELLED",
    }

    assert _timeline(page, console_url, ok) == ["reserve_stock", "charge_payment", "confirm_order"]
    expect(page.locator("#timeline-facts")).to_contain_text("COMPLETED")
    expect(page.locator("#timeline-steps li.compensation")).to_have_count(0)

    steps = _timeline(page, console_url, declined)
    assert steps[:2] == ["reserve_stock", "charge_payment"], steps
    compensations = page.locator("#timeline-steps li.compensation")
    assert [text.split()[0] for text in compensations.all_inner_texts()] == steps[2:]
    assert "release_stock" in steps[2:] and steps[-1] == "cancel_order", steps
    expect(page.locator("#timeline-steps")).to_contain_text("payment declined")
    expect(page.locator("#timeline-steps li").first).to_contain_text(f"{RELEASE}-saga-stack-")


def test_the_dashboards_draw_panels_from_prometheus(console_url: str, page: Page) -> None:
    page.goto(console_url + "/#dashboards")
    expect(page.locator("#board-select option").first).to_be_attached()
    expect(page.locator("#board-error")).to_be_hidden()
    # The app has been scraped since the release came up: its panels have data.
    wait_for(
        "a dashboard panel drawn with data",
        lambda: page.locator("#board-grid .panel .uplot canvas").count() > 0,
        timeout=120,
        every=1,
    )
    titles = page.locator("#board-grid .panel:has(.uplot) h3").all_inner_texts()
    assert titles, "no panel drawn"
