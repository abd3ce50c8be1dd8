"""The compose loadtest profile, run here: its Locust master and worker commands against the embedded server, and
the master's web UI driven in headless Chromium (Debian's chromium and chromium-driver, through selenium).

Only the container paths and addresses change: the locustfile path, --host, and where the master and its UI listen.
The custom options (--model, --protocol, --batch-size, --payload) are the ones the compose file passes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from conftest import export_tiny
from test_compose_config import ROOT, TEST_KEY, compose_config, option_value
from tritonkit.server import EmbeddedServer, free_port

# The compose file mounts ./loadtest at /mnt/locust and runs /mnt/locust/locustfile.py (test_compose_config).
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"

MODEL = "tiny"
USERS = 2
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def test_the_locustfile_compose_runs_is_there() -> None:
    # A failure, not a skip: without this file the compose loadtest profile has nothing to run.
    assert LOCUSTFILE.is_file(), f"{LOCUSTFILE} is missing: the compose loadtest profile runs it"
    assert "from tritonkit.loadtest.locustfile import" in LOCUSTFILE.read_text(), "not the re-export"


def replace_option(command: list[str], option: str, value: str) -> list[str]:
    index = command.index(option)
    return [*command[: index + 1], value, *command[index + 2 :]]


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    repository = tmp_path_factory.mktemp("loadtest-repository")
    export_tiny(repository, MODEL, "onnx")
    with EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        yield server


class Locust:
    """The compose master and one worker as local processes; their output is kept for failure messages."""

    def __init__(self, triton: EmbeddedServer, workdir: Path) -> None:
        services = compose_config("loadtest", env={"TRITONKIT_API_KEY": TEST_KEY, "LOADTEST_MODEL": MODEL})["services"]
        self.master_port, self.web_port = free_port(), free_port()
        master = replace_option(services["locust-master"]["command"], "-f", str(LOCUSTFILE))
        master = replace_option(master, "--host", triton.grpc_url)
        master = replace_option(master, "--web-port", str(self.web_port))
        master += ["--web-host", "127.0.0.1", "--master-bind-host", "127.0.0.1"]
        master += ["--master-bind-port", str(self.master_port)]
        worker = replace_option(services["locust-worker"]["command"], "-f", str(LOCUSTFILE))
        worker = [*replace_option(worker, "--master-host", "127.0.0.1"), "--master-port", str(self.master_port)]
        assert option_value(master, "--model") == MODEL
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.logs = [workdir / "master.log", workdir / "worker.log"]
        self.processes = [self._start(argv, log) for argv, log in zip((master, worker), self.logs)]

    @staticmethod
    def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as output:
            return subprocess.Popen(
                [sys.executable, "-m", "locust", *argv],
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def output(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in self.logs)

    def stats(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.url}/stats/requests", timeout=2) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
            return None

    def wait_for_stats(self, condition: Callable[[dict], bool], timeout_s: float = 30) -> dict:
        """The master's statistics once ``condition`` holds for them, or the last ones read after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        stats: dict = {}
        while time.monotonic() < deadline:
            for process in self.processes:
                assert process.poll() is None, f"a Locust process exited:\n{self.output()}"
            stats = self.stats() or stats
            if condition(stats):
                break
            time.sleep(0.25)
        return stats

    def wait_for_worker(self, timeout_s: float = 60) -> None:
        if self.wait_for_stats(lambda stats: stats.get("worker_count") == 1, timeout_s).get("worker_count") != 1:
            pytest.fail(f"the Locust worker did not connect to the master within {timeout_s:.0f} s:\n{self.output()}")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def locust(triton: EmbeddedServer, tmp_path: Path) -> Iterator[Locust]:
    running = Locust(triton, tmp_path)
    try:
        running.wait_for_worker()
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium and chromedriver are not installed: run tools/install-system-packages")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,1024"):
        options.add_argument(flag)
    # Explicit paths: selenium must not go looking for (or downloading) a driver of its own.
    session = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield session
    finally:
        session.quit()


def stats_row(browser: WebDriver, name: str) -> dict[str, str] | None:
    """The row of the web UI's statistics table whose Name is ``name``, keyed by the columns' sort keys."""
    for table in browser.find_elements(By.TAG_NAME, "table"):
        keys = [th.get_attribute("data-sortkey") for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
        if "numRequests" not in keys:
            continue
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
            cells = dict(zip(keys, (td.text for td in row.find_elements(By.TAG_NAME, "td"))))
            if cells.get("name") == name:
                return cells
    return None


def test_locust_web_ui_starts_a_swarm_against_triton(locust: Locust, browser: WebDriver, triton: EmbeddedServer):
    browser.get(locust.url)
    users = WebDriverWait(browser, 30).until(expected_conditions.element_to_be_clickable((By.NAME, "userCount")))
    assert "Locust" in browser.title
    # The form shows the compose master's options, pre-filled.
    assert browser.find_element(By.NAME, "host").get_attribute("value") == triton.grpc_url
    assert browser.find_element(By.NAME, "model").get_attribute("value") == MODEL
    for field in (users, browser.find_element(By.NAME, "spawnRate")):
        # Select-all and type: clear() leaves a React-controlled field's old value in place.
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(str(USERS))
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()

    try:
        # The table re-renders every few seconds, so a row read mid-render is simply read again.
        row = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda page: (cells := stats_row(page, "Aggregated")) and int(cells["numRequests"] or 0) > 0 and cells
        )
    except TimeoutException:
        browser.save_screenshot(str(locust.logs[0].with_name("locust-ui.png")))
        pytest.fail(f"the stats table showed no requests; screenshot in {locust.logs[0].parent}\n{locust.output()}")
    assert row["numFailures"] == "0", f"{row}\n{locust.output()}"
    # The master learns the workers' user counts from their reports, which may trail the first request.
    stats = locust.wait_for_stats(lambda stats: stats.get("user_count") == USERS)
    assert stats.get("user_count") == USERS, f"the swarm is not the one the form asked for: {stats}"
    shown = int(row["numRequests"])
    # The requests the UI counts reached Triton: its own statistics count at least as many.
    with urllib.request.urlopen(f"http://{triton.http_url}/v2/models/{MODEL}/stats", timeout=10) as response:
        served = int(json.load(response)["model_stats"][0]["inference_stats"]["success"]["count"])
    assert served >= shown > 0
