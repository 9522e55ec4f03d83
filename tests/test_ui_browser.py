"""The MLflow UI, started by ``harness ui``, checked in headless Chromium as a user would.

Needs Debian's chromium (/usr/bin/chromium; `.ci/run` installs it) and Playwright's Python package
(a test dependency; its own browser download is not used). Screenshots of every step are saved in the
test's temporary folder, whose path a failure prints.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request

import pytest

from harness.cli import main
from tests.helpers import ROOT
from tests.services import free_port

ARTIFACTS = ROOT / "test-artifacts"

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    import playwright.sync_api  # noqa: F401

    PLAYWRIGHT = True
except ImportError:
    PLAYWRIGHT = False

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not PLAYWRIGHT, reason="playwright is not installed (pip install -e .[test])"),
]

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The UI opens in "GenAI" mode with an assistant panel; a machine-learning user switches both off once.
INIT = """localStorage.setItem('mlflow.workflowType_v1', JSON.stringify('machine_learning'));
localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"""

STUDY = """
name = "uistudy"
[fixed]
dataset = "iris"
hidden = [8]
[conditions]
loss = ["mse", "cross_entropy"]
[conditions.optimizer]
sgd = { optimizer = "sgd", momentum = 0.0 }
momentum = { optimizer = "sgd", momentum = 0.9 }
[search]
lr = { low = 0.05, high = 1.0, log = true }
epochs = { low = 4, high = 9 }
[budget]
trials = 3
[pruner]
name = "none"
[confirm]
seeds = 2
"""


SCROLL_METRICS = """() => {
  const links = Array.from(document.querySelectorAll('a')).filter(a => a.href.includes('metric'));
  if (!links.length) return;
  const last = links[links.length - 1];
  last.scrollIntoView({block: 'start'});
  for (let el = last.parentElement; el; el = el.parentElement) {
    if (el.scrollHeight > el.clientHeight + 2) el.scrollTop += 400;
  }
}"""
"""The compare page's metrics table draws only the rows in view (about 17); a user scrolls it to reach the
others. Scrolled the same way here: its last drawn metric into view, then its scroller down."""


def metric_link(page, name):
    """The compare page's link to metric ``name``, scrolling the metrics table until the row is drawn."""
    link = page.get_by_role("link", name=name, exact=True)
    for _ in range(40):
        if link.count():
            break
        page.evaluate(SCROLL_METRICS)
        time.sleep(0.25)
    return link.first


def test_the_mlflow_ui_shows_a_study_as_a_user_sees_it(tmp_path, capsys):
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    study = tmp_path / "uistudy.toml"
    study.write_text(textwrap.dedent(STUDY))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["sweep", str(study), "--tracking-uri", uri, "--storage", str(tmp_path / "s.journal")]) == 0
    assert main(["compare", "uistudy", "--tracking-uri", uri, "--out", str(tmp_path / "report")]) == 0
    capsys.readouterr()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("uistudy").experiment_id
    runs = client.search_runs([experiment], max_results=100)
    parents = {r.data.tags["harness.condition"]: r for r in runs if r.data.tags.get("harness.kind") == "condition"}
    parent = parents["mse-sgd"]
    trials = sorted(
        (
            r
            for r in runs
            if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
            and r.data.tags.get("harness.kind") == "search"
        ),
        key=lambda r: r.info.run_name,
    )
    first, second = trials[0], trials[1]

    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "harness", "ui", "--port", str(port), "--tracking-uri", uri, "--study", "uistudy"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    shots = ARTIFACTS / "ui-browser"  # kept for CI when a step fails; removed when all pass
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    step = "starting harness ui"
    try:
        links, seen = {}, []
        deadline = time.time() + 180
        while len(links) < 2:  # harness ui prints the study's two links once the server answers
            line = ui.stdout.readline()
            seen.append(line)
            assert line and time.time() < deadline, "harness ui did not come up"
            if line.strip().startswith(("the study's runs:", "its conditions compared:")):
                links[line.split(":", 1)[0].strip()] = line.split(": ", 1)[1].strip()
        runs_link, compare_link = links["the study's runs"], links["its conditions compared"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            first_visit = browser.new_context(viewport={"width": 1500, "height": 1000})
            page = first_visit.new_page()
            try:
                step = "a first visit through the printed link shows the conditions with their results' columns"
                assert "viewStateShareKey=harness-results" in runs_link, runs_link
                page.goto(runs_link)
                for name in parents:
                    page.get_by_text(name, exact=True).first.wait_for(timeout=60000)
                page.get_by_text("harness: results by condition").first.wait_for(timeout=20000)
                page.get_by_text("test_accuracy_mean", exact=True).first.wait_for(timeout=20000)
                page.screenshot(path=shots / "0-first-visit.png")
                text = page.inner_text("body")
                for run in parents.values():  # the parents' own numbers, in columns the user did not pick
                    assert str(run.data.metrics["test_accuracy_mean"]) in text, run.info.run_name
                    assert str(run.data.metrics[f"best_{run.data.params['objective']}"]) in text, run.info.run_name
            except Exception:  # noqa: BLE001 - keep a screenshot, name the step
                page.screenshot(path=shots / "failure.png")
                raise AssertionError(f"UI step failed: {step}; screenshots in {shots}") from None
            context = browser.new_context(viewport={"width": 1500, "height": 1000})
            context.add_init_script(INIT)
            page = context.new_page()
            try:
                step = "the printed comparison link shows the 4 conditions with their test accuracy"
                page.goto(compare_link)
                page.get_by_text("Comparing 4 Runs").first.wait_for(timeout=60000)
                metric_link(page, "test_accuracy_mean").wait_for(timeout=20000)
                text = page.inner_text("body")
                for run in parents.values():
                    shown = f"{run.data.metrics['test_accuracy_mean']:.3f}".rstrip("0").rstrip(".")
                    assert shown in text, (run.info.run_name, shown)
                page.screenshot(path=shots / "1-conditions.png", full_page=True)

                step = "their validation-accuracy chart overlays the 4 conditions' mean curves"
                link = metric_link(page, "val_accuracy_seeds_mean")  # named so: not read against best_val_accuracy
                href = link.get_attribute("href") or ""
                step += f" (link {href!r})"
                assert "metric" in href and "val_accuracy_seeds_mean" in href, href
                page.goto(urllib.parse.urljoin(page.url, href))  # the link may open a tab; its page, here
                page.locator(".js-plotly-plot").first.wait_for(timeout=30000)
                curves = {}
                for _ in range(120):  # plotly draws a curve as a line and its markers: one name, two traces
                    traces = page.evaluate(
                        "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                        ".flatMap(p => (p.data || []).map(t => [t.name, (t.x || []).length]))"
                    )
                    curves = {name: length for name, length in traces if name}
                    if len(curves) >= 4:
                        break
                    time.sleep(0.5)
                step += f" (points per curve seen: {curves})"
                assert len(curves) == 4 and min(curves.values()) > 1, curves
                page.screenshot(path=shots / "2-curves.png")

                step = "the experiment page lists the trial runs under their parent run"
                page.goto(f"{base}/#/experiments/{experiment}/runs")
                row = page.locator("[role=row]", has_text=parent.info.run_name).first
                row.wait_for(timeout=60000)
                assert page.get_by_text(first.info.run_name, exact=True).count() == 0  # collapsed
                row.locator("button").first.click()  # the parent's expander
                for trial in trials:
                    page.get_by_text(trial.info.run_name, exact=True).first.wait_for(timeout=20000)
                page.screenshot(path=shots / "3-nested.png")

                step = "a run page shows loss, optimizer and lr"
                page.goto(f"{base}/#/experiments/{experiment}/runs/{first.info.run_id}")
                page.get_by_text("optimizer", exact=True).first.wait_for(timeout=20000)
                text = page.inner_text("body")
                for key in ("loss", "optimizer", "lr"):
                    assert key in text
                assert first.data.params["lr"] in text and first.data.params["loss"] in text
                page.screenshot(path=shots / "4-run.png")

                step = "the parent's description reads as written: its search range and '(log)' (was a link)"
                page.goto(f"{base}/#/experiments/{experiment}/runs/{parent.info.run_id}")
                page.get_by_text("lr in [0.05, 1] (log)").first.wait_for(timeout=20000)
                assert "\\[" not in page.inner_text("body")  # no escape shows
                page.screenshot(path=shots / "4b-description.png")

                step = "the compare view of two runs opens"
                runs_arg, experiments_arg = (
                    json.dumps([first.info.run_id, second.info.run_id]),
                    json.dumps([experiment]),
                )
                page.goto(f"{base}/#/compare-runs?runs={runs_arg}&experiments={experiments_arg}")
                page.get_by_text("Comparing 2 Runs").first.wait_for(timeout=20000)
                page.screenshot(path=shots / "5-compare.png")

                step = "the validation-loss chart has one point per epoch"
                page.get_by_role("link", name="val_mse").first.click()
                page.locator(".js-plotly-plot").first.wait_for(timeout=30000)
                lengths = []
                for _ in range(20):
                    lengths = page.evaluate(
                        "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                        ".flatMap(p => (p.data || []).map(t => (t.x || []).length))"
                    )
                    if lengths:
                        break
                    time.sleep(0.5)
                epochs = {int(first.data.params["epochs"]), int(second.data.params["epochs"])}
                assert lengths and set(lengths) == epochs, (lengths, epochs)
                page.screenshot(path=shots / "6-metric.png")

                step = "the comparison plots are among the parent run's artifacts"
                page.goto(f"{base}/#/experiments/{experiment}/runs/{parent.info.run_id}/artifacts")
                for name in ("curves_by_condition.png", "lr_sensitivity.png", "budget_curves.png", "report.html"):
                    page.get_by_text(name).first.wait_for(timeout=20000)
                page.screenshot(path=shots / "7-artifacts.png")

                step = "report.html fits a 1400 px window: no table wider than the page, readable headers"
                report = browser.new_page(viewport={"width": 1400, "height": 900})
                report.goto((tmp_path / "report" / "report.html").as_uri())
                widths = report.evaluate(
                    "() => ({page: document.documentElement.scrollWidth, window: window.innerWidth,"
                    " tables: Array.from(document.querySelectorAll('table'))"
                    ".map(t => t.getBoundingClientRect().right)})"
                )
                report.screenshot(path=shots / "8-report.png", full_page=True)
                assert widths["page"] <= widths["window"], widths
                assert widths["tables"] and max(widths["tables"]) <= widths["window"], widths
                headers = report.evaluate("() => Array.from(document.querySelectorAll('th')).map(h => h.innerText)")
                assert "test accuracy [95% CI]" in headers and not any("_ci_" in h for h in headers), headers
                assert report.get_by_text("Findings").count() == 1
                assert report.locator("h2").first.inner_text() == "Answer"  # the answer in plain words, first
            except Exception:  # noqa: BLE001 - any failing step: keep a screenshot, name the step
                page.screenshot(path=shots / "failure.png")
                raise AssertionError(f"UI step failed: {step}; screenshots in {shots}") from None
            finally:
                browser.close()
    finally:
        os.killpg(ui.pid, signal.SIGINT)  # Ctrl-C
        ui.wait(timeout=60)
    output = "".join(seen) + ui.stdout.read()
    assert f"MLflow UI on {base}" in output
    assert ui.returncode == 0
    shutil.rmtree(shots, ignore_errors=True)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/health", timeout=2)  # the server's whole group is gone
