from __future__ import annotations

import itertools
import json
import re

import networkx as nx
import numpy as np
import pytest

from cosearch.cli.main import main
from cosearch.controller import RunStore
from cosearch.job import spec_from_dict
from cosearch.report import html as report_html
from cosearch.report import pareto_ids

pytest.importorskip("plotly")


def page_data(page: str) -> dict:
    found = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(found.group(1).replace("<\\/", "</"))


def test_report_is_one_self_contained_page(report_run, capsys):
    assert main(["report", str(report_run)]) == 0
    page = (report_run / "report.html").read_text()
    assert "wrote" in capsys.readouterr().out
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # every script inlined, nothing fetched
    data = page_data(page)
    assert data["counts"] == {"ok": 24, "infeasible": 4, "failed": 2}
    assert len(data["id"]) == 30 and set(data["values"]) >= {"accuracy", "latency_ms@local-cpu", "latency_ms@rpi4"}
    assert [e for _, e in data["failures"]] == ["EvaluationError: loss became nan"] * 2
    # the job's goals, then one view per device
    assert [v["name"] for v in data["views"]] == ["all devices (the job's goals)", "device local-cpu", "device rpi4"]
    rpi4 = data["views"][2]
    assert [m for m, _ in rpi4["objectives"]] == ["accuracy", "size_kb", "latency_ms@rpi4"]
    assert [b[0] for b in rpi4["budgets"]] == ["size_kb"]  # the local-cpu budget belongs to another device


def test_every_trained_candidate_has_a_card_with_its_layers_and_drawing(report_run):
    data = report_html.report_data(report_run)
    with RunStore(report_run) as store:
        stored = {r.id: r.result for r in store.results()}
    ok = [i for i, r in stored.items() if r.ok]
    assert sorted(map(int, data["cards"])) == ok
    card = data["cards"][str(ok[0])]
    policy = stored[ok[0]].candidate.policy
    assert [slot for slot, _ in card["layers"]] == list(policy.layers)
    assert all(layer == policy.layers[slot].to_json() for slot, layer in card["layers"])
    (title, drawing), *_ = [(g["title"], g) for g in data["drawings"][card["drawing"]]]
    assert "cell" in title and drawing["nodes"][0][0] == "in"


def test_over_the_detail_limit_the_fronts_keep_their_cards(report_run, monkeypatch):
    with RunStore(report_run) as store:
        job = spec_from_dict(store.job())
        outcomes = store.outcomes()
    front = pareto_ids(outcomes, job.goals())
    monkeypatch.setattr(report_html, "DETAIL_LIMIT", len(front) + 1)
    data = report_html.report_data(report_run)
    assert len(data["cards"]) == len(front) + 1
    assert set(front) <= set(map(int, data["cards"]))
    assert all(data["summary"][data["id"].index(i)] >= 0 for i in front)  # hover text for the front


def test_curves_never_get_worse_and_reach_the_front_of_the_run(report_run):
    data = report_html.report_data(report_run)
    curves = data["views"][0]["curves"]
    assert curves["evaluations"] == list(range(1, 31))
    hv = curves["hypervolume"]
    assert all(b >= a for a, b in itertools.pairwise(hv)) and hv[-1] > 0
    best = [b for b in curves["best"] if b is not None]
    assert all(b >= a for a, b in itertools.pairwise(best))
    with RunStore(report_run) as store:
        job = spec_from_dict(store.job())
        feasible = [r.result.metrics["accuracy"] for r in store.outcomes() if job.goals().feasible(r.result)]
    assert best[-1] == pytest.approx(max(feasible), rel=1e-5)


def test_curves_sample_a_long_run_at_a_fixed_number_of_points():
    from cosearch.controller.store import Outcome, StoredOutcome
    from cosearch.core.objectives import Goals, Objective

    goals = Goals((Objective.parse("accuracy"), Objective.parse("size_kb")))
    rng = np.random.default_rng(0)
    items = [
        StoredOutcome(i, Outcome("ok", {"accuracy": float(a), "size_kb": float(s)}, None, {}, {}))
        for i, (a, s) in enumerate(rng.uniform(0, 1, (5000, 2)), start=1)
    ]
    curves = report_html._curves(items, goals)
    assert len(curves["evaluations"]) == report_html.CURVE_POINTS and curves["evaluations"][-1] == 5000
    values, _ = goals.arrays([r.result for r in items])
    scaled = (values - values.min(0)) / (values.max(0) - values.min(0))
    from cosearch.core.pareto import hypervolume

    assert curves["hypervolume"][-1] == pytest.approx(hypervolume(scaled, np.full(2, 1.1)), rel=1e-5)


def test_layout_places_each_node_after_its_inputs():
    graph = nx.DiGraph([("a", "b"), ("b", "c"), ("a", "c")])
    graph.nodes["a"]["label"] = "input"
    drawn = report_html.layout(graph)
    x = {label: col for label, col, _ in drawn["nodes"]}
    assert x == {"input": 0, "b": 1, "c": 2}
    assert sorted((a, b) for a, b, _ in drawn["edges"]) == [(0, 1), (0, 2), (1, 2)]


def test_report_to_a_folder_is_a_clear_error(report_run, capsys):
    assert main(["report", str(report_run), "--out", str(report_run)]) == 2
    assert "is a folder" in capsys.readouterr().err
