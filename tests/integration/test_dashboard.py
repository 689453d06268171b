"""The dashboard in a real browser: ``masa serve`` (uvicorn, a subprocess on 127.0.0.1) over
PostgreSQL read models filled by real ingest and projection, opened in Debian's headless
Chromium through selenium (its chromedriver; nothing downloaded). The page shows what the API
returns, follows /v1/stream without a reload, and is photographed at desktop and phone size.

The photographs are test artifacts, written to ``build/test-artifacts/screenshots/`` (or
``$MASA_TEST_ARTIFACTS/screenshots``); ``MASA_UPDATE_SCREENSHOTS=1`` also copies them over the
ones the docs show (docs/screenshots/), so a plain run never dirties the checkout."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.readmodels import Network, add_worker, env, filled_postgres
from tests.support.site import closed_port

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MASA_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
DOC_SCREENSHOTS = REPO / "docs" / "screenshots"
SIZES = {"desktop": (1280, 800, False), "phone": (390, 844, True)}

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (scripts/provision)",
)


@pytest.fixture(scope="module")
def network(postgres_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with filled_postgres(postgres_server, tmp_path_factory.mktemp("ui"), seed=33) as net:
        yield net


@pytest.fixture(scope="module")
def server(network: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``masa serve`` on a free port, as the reader role; its base URL once it answers."""
    port = closed_port()
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("w")
    masa = str(Path(sys.executable).with_name("masa"))
    child = subprocess.Popen(
        [masa, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**env(network.harness), "MASA_LOG_LEVEL": "WARNING"}, stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _answers(url, child), 30, "masa serve to answer")
        yield url
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()


def _answers(url: str, child: subprocess.Popen[bytes]) -> bool:
    assert child.poll() is None, "masa serve exited"
    try:
        return httpx.get(f"{url}/v1/nodes", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never fetch a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,800",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)  # fmt: skip
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _text(driver: Any, element_id: str) -> str:
    return str(driver.execute_script(f"return document.getElementById('{element_id}').textContent"))


def _resize(driver: Any, name: str) -> None:
    width, height, mobile = SIZES[name]
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


def _shoot(driver: Any, name: str, tmp_path: Path) -> Path:
    _resize(driver, name)
    time.sleep(0.5)  # the page re-flows (and re-draws nothing: charts are fluid SVG)
    path = tmp_path / f"dashboard-{name}.png"
    assert driver.save_screenshot(str(path))
    full = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"captureBeyondViewport": True, "format": "png"}
    )
    (tmp_path / f"dashboard-{name}-full.png").write_bytes(base64.b64decode(full["data"]))
    targets = [ARTIFACTS / "screenshots"]
    if os.environ.get("MASA_UPDATE_SCREENSHOTS") == "1":
        targets.append(DOC_SCREENSHOTS)
    for target in targets:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)
    return path


def test_the_dashboard_shows_the_api_and_follows_the_stream(
    browser: Any, server: str, network: Network, tmp_path: Path
) -> None:
    nodes = httpx.get(f"{server}/v1/nodes").json()["total"]
    assert nodes == network.nodes
    _resize(browser, "desktop")
    browser.get(server + "/")
    _wait(lambda: _text(browser, "kpi-nodes") == str(nodes), 20, f"the page to show {nodes} nodes")
    _wait(lambda: _text(browser, "live-text") == "live", 10, "the stream to connect")
    overview = httpx.get(f"{server}/v1/overview").json()
    assert _text(browser, "kpi-rpm") and _text(browser, "position") == str(
        overview["projection"]["position"]
    )
    latency = httpx.get(f"{server}/v1/stats/latency").json()["items"]
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#table-latency tbody tr td:first-child')]"
        ".map(td => td.textContent)"
    )
    assert rows == [k["kind"] for k in latency]
    heat = browser.execute_script("return document.querySelectorAll('#chart-uptime rect').length")
    assert heat >= len(network.harness.people.workers)
    options = browser.execute_script(
        "return [...document.getElementById('as-of').options].map(o => o.value)"
    )
    epochs = [str(e["epoch"]) for e in httpx.get(f"{server}/v1/epochs").json()["items"]]
    assert options == ["", *reversed(epochs)]

    desktop = _shoot(browser, "desktop", tmp_path)
    phone = _shoot(browser, "phone", tmp_path)
    assert desktop.stat().st_size > 10_000 and phone.stat().st_size > 10_000
    _resize(browser, "desktop")

    browser.execute_script("window.__notReloaded = true")
    before = int(_text(browser, "updates"))
    add_worker(network, "dashboard")
    _wait(lambda: _text(browser, "kpi-nodes") == str(nodes + 1), 20, "the page to show a new node")
    assert browser.execute_script("return window.__notReloaded === true"), "the page reloaded"
    assert int(_text(browser, "updates")) > before
    assert httpx.get(f"{server}/v1/nodes").json()["total"] == nodes + 1


def test_the_as_of_selector_narrows_the_panels(browser: Any, server: str) -> None:
    from selenium.webdriver.support.ui import Select

    browser.get(server + "/")
    loaded = "return document.body.dataset.loaded === 'true'"
    _wait(lambda: browser.execute_script(loaded), 20, "the page to load")

    def fee_columns() -> int:
        return int(browser.execute_script(
            "return new Set([...document.querySelectorAll('#chart-fees rect')]"
            ".map(r => r.getAttribute('x'))).size"
        ))  # fmt: skip

    everything = _wait(fee_columns, 10, "the fees chart")
    Select(browser.find_element("id", "as-of")).select_by_value("0")
    _wait(lambda: fee_columns() == 1, 10, "the fees chart to show epoch 0 only")
    assert everything > 1
