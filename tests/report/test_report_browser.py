"""The report opened in headless Chromium (Debian's package, driven by Playwright): it loads
offline with no errors, draws every plot, shows a clicked point's card, and follows a budget."""

from __future__ import annotations

import shutil

import pytest

from cosearch.cli.main import main
from cosearch.controller import RunStore
from cosearch.core.objectives import Constraint
from cosearch.job import spec_from_dict
from cosearch.report import pareto_ids, picking_set, view_goals

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need playwright (pip install -e .[dev])"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("the browser tests need Debian's chromium (apt-get install chromium)", allow_module_level=True)

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        # Playwright gives each launch a fresh, temporary --user-data-dir.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, timeout=60_000)
        yield chromium
        chromium.close()


@pytest.fixture
def opened(browser, report_run):
    """The report of `report_run` in a page that may not reach anything but the file itself."""
    assert main(["report", str(report_run)]) == 0
    path = (report_run / "report.html").resolve()
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    problems, fetched = [], []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    def guard(route):
        if route.request.url != path.as_uri():
            fetched.append(route.request.url)
            return route.abort()
        return route.continue_()

    page.route("**/*", guard)
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    yield page, problems, fetched
    page.close()


def front_of(run_dir, budgets=(), device=None) -> list[int]:
    """What `cosearch pareto RUN_DIR [--device D] [--budget B]` lists, in its order."""
    with RunStore(run_dir) as store:
        job = spec_from_dict(store.job())
        outcomes = store.outcomes()
    seen = {m for r in outcomes for m in r.result.metrics}
    goals = view_goals(job.goals(), seen, device, [Constraint.parse(b) for b in budgets])
    return pareto_ids(picking_set(outcomes), goals)


def test_loads_offline_with_every_plot_and_no_errors(opened, report_run):
    page, problems, fetched = opened
    assert problems == [] and fetched == []
    plots = page.locator(".js-plotly-plot")
    # accuracy/latency, accuracy/size, latency/size; hypervolume, best feasible; parallel coordinates
    assert plots.count() == 6
    for k in range(plots.count()):
        assert plots.nth(k).locator(".main-svg").count() >= 1
    assert page.locator(".pair-plot .scatterlayer .trace path.point").count() > 0
    assert page.locator("#parcoords .parcoords").count() == 1
    assert page.locator("#failures tr").count() == 3  # a header and the two failures
    front = front_of(report_run)
    assert page.evaluate("window.cosearchReport.frontIds()") == front
    assert page.locator("#pareto tr.pick").count() == len(front)


def test_a_click_on_a_front_point_shows_its_card(opened, report_run):
    page, problems, _ = opened
    front = set(front_of(report_run))
    points = page.locator(".pair-plot").first.locator(".scatterlayer .trace").last.locator("path.point")
    assert points.count() >= 2
    box = points.nth(1).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    card_id = int(page.locator("#card-id").inner_text().lstrip("#"))
    assert card_id in front
    assert page.locator("#card-export").inner_text() == f"cosearch export {report_run} --pick {card_id}"
    assert page.locator("#card .strip tr").count() >= 2  # a gene row under the layer numbers
    assert page.locator("#card svg.diagram .node").count() >= 2
    assert page.locator(f"#pareto tr.chosen[data-id='{card_id}']").count() == 1
    assert problems == []


def test_moving_a_budget_changes_the_highlighted_front(opened, report_run):
    page, problems, _ = opened
    before = page.evaluate("window.cosearchReport.frontIds()")
    field = page.get_by_label("latency_ms@local-cpu <=", exact=True)
    field.fill("0.6")
    field.dispatch_event("change")
    after = page.evaluate("window.cosearchReport.frontIds()")
    assert after != before
    assert after == front_of(report_run, ["latency_ms@local-cpu <= 0.6"])
    assert page.locator("#front-count").inner_text() == f"{len(after)} on the feasible front"
    red = page.locator(".pair-plot").first.locator(".scatterlayer .trace").last.locator("path.point")
    assert red.count() == len(after)
    page.get_by_role("button", name="job's budgets").click()
    assert page.evaluate("window.cosearchReport.frontIds()") == before
    assert problems == []


def test_choosing_a_device_shows_its_front(opened, report_run):
    page, problems, _ = opened
    page.get_by_label("device").select_option(label="device rpi4")
    assert page.evaluate("window.cosearchReport.frontIds()") == front_of(report_run, device="rpi4")
    axes = page.locator(".pair-plot").evaluate_all("plots => plots.map(p => [p.dataset.x, p.dataset.y])")
    assert axes == [["size_kb", "accuracy"], ["latency_ms@rpi4", "accuracy"], ["latency_ms@rpi4", "size_kb"]]
    assert problems == []
