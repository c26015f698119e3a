"""How large and how fast the report is for a large run: `python scripts/bench_report.py --results 100000`.

Fills a run store with that many real nb201 joint candidates and random metrics on two devices
(nothing trained), writes the report, opens it in headless Chromium (Debian's package, through
Playwright) and times: writing it, loading it until every plot is drawn, and one budget change
(the front recomputed and every plot redrawn). Writes benchmarks/report.{json,md} with --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cosearch.report.html import write_report
from cosearch.testing.runs import make_run  # real candidates, random metrics: nothing trained

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
FLAGS += ["--disable-sync", "--no-first-run"]


def measure(results: int, repeats: int) -> dict:
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        t = time.perf_counter()
        make_run(work / "run", n=results)
        fill_s = time.perf_counter() - t
        t = time.perf_counter()
        page_path = write_report(work / "run")
        write_s = time.perf_counter() - t
        loads, changes = [], []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
            for _ in range(repeats):
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                errors = []
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                t = time.perf_counter()
                page.goto(page_path.as_uri(), timeout=120_000)
                page.wait_for_selector("body[data-ready='1']", timeout=120_000)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))")
                loads.append(time.perf_counter() - t)
                field = page.get_by_label("latency_ms@local-cpu <=", exact=True)
                t = time.perf_counter()
                field.fill("0.6")
                field.dispatch_event("change")
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))")
                changes.append(time.perf_counter() - t)
                front = page.evaluate("window.cosearchReport.frontIds().length")
                assert not errors, errors
                page.close()
            browser.close()
        return {
            "results": results,
            "fill_store_s": round(fill_s, 2),
            "write_report_s": round(write_s, 2),
            "file_mb": round(page_path.stat().st_size / 1e6, 2),
            "load_s": sorted(round(x, 2) for x in loads),
            "budget_change_s": sorted(round(x, 2) for x in changes),
            "front_after_change": front,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeats", type=int, default=3, help="page loads per size")
    parser.add_argument("--out", help="write OUT.json and OUT.md")
    args = parser.parse_args()
    rows = []
    for n in args.results:
        rows.append(measure(n, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        command = "python scripts/bench_report.py " + " ".join(sys.argv[1:])
        Path(f"{args.out}.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
        lines = [
            "# The report at scale",
            "",
            f"`{command}` (2-core CPU, Debian chromium headless, software WebGL). Load: from navigation until",
            "every plot is drawn; budget change: a typed bound, the front recomputed and every plot redrawn (median of",
            "the repeats; while a slider is dragged the parallel coordinates wait for its release, the slowest part).",
            "",
            "| results | write report s | file MB | load s (median) | budget change s (median) |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            mid = len(r["load_s"]) // 2
            lines.append(
                f"| {r['results']:,} | {r['write_report_s']} | {r['file_mb']} | {r['load_s'][mid]} | {r['budget_change_s'][mid]} |"
            )
        Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
