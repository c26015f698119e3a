// cosearch report: draws the run held in #report-data with plotly.js (inlined before this script).
// One state (the view and its budgets); every change recomputes the feasible front and redraws.
(function () {
  "use strict";
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const parsedMs = performance.now() - t0;
  const N = D.id.length;
  const GL_ABOVE = 5000; // points per plot drawn as SVG up to here, with WebGL above
  const PARCOORDS_LINES = 3000;
  const CLASS = { over: 0, feasible: 1, front: 2, searched: 3 };
  const STYLE = [
    { name: "over budget", color: "#c7c7c7", size: 6 },
    { name: "feasible, dominated", color: "#9fb4c7", size: 7 },
    { name: "feasible front", color: "#d62728", size: 10 },
    { name: "searched (before the final training)", color: "#e0c58f", size: 6 },
  ];
  const CONFIG = { displaylogo: false, responsive: true };
  const state = { view: 0, budgets: [], cls: new Int8Array(N), front: [], card: null };
  const indexOf = new Map(D.id.map((id, i) => [id, i]));

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child != null) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const label = (m) => (m === "accuracy" ? "accuracy (val)" : m);
  function fmt(metric, v) {
    if (v == null) return "–";
    if (metric.split("@")[0] === "accuracy") return (100 * v).toFixed(2) + " %";
    return Number(v).toPrecision(4);
  }
  const view = () => D.views[state.view];
  const value = (m, i) => (D.values[m] ? D.values[m][i] : null);

  function meets(i) {
    return state.budgets.every(([m, op, bound]) => {
      const v = value(m, i);
      return v != null && (op === "<=" ? v <= bound : v >= bound);
    });
  }

  // The feasible front of the picking set: sorted lexicographically, a point can only be
  // dominated by an earlier one, and by a front member if by anything (transitivity).
  function classify() {
    const objectives = view().objectives;
    const candidates = [];
    for (let i = 0; i < N; i++) {
      state.cls[i] = -1;
      if (D.status[i] === 2) continue;
      if (!D.pick[i]) { state.cls[i] = CLASS.searched; continue; }
      const vector = objectives.map(([m, dir]) => { const v = value(m, i); return v == null ? null : dir === "max" ? -v : v; });
      if (D.status[i] !== 0 || vector.includes(null) || !meets(i)) { state.cls[i] = CLASS.over; continue; }
      state.cls[i] = CLASS.feasible;
      candidates.push([i, vector]);
    }
    candidates.sort((a, b) => {
      for (let k = 0; k < a[1].length; k++) if (a[1][k] !== b[1][k]) return a[1][k] - b[1][k];
      return D.id[a[0]] - D.id[b[0]];
    });
    const front = [];
    for (const [i, v] of candidates) {
      const dominated = front.some(([, w]) => w.every((x, k) => x <= v[k]) && w.some((x, k) => x < v[k]));
      if (!dominated) { front.push([i, v]); state.cls[i] = CLASS.front; }
    }
    state.front = front.map(([i]) => i);
  }

  let hovers = []; // per point, for the current view (its metrics do not change with the bounds)
  const hoverOf = (i) => hovers[i] || (hovers[i] = hover(i));
  function hover(i) {
    const lines = [`<b>#${D.id[i]}</b>`];
    for (const [m] of view().objectives) lines.push(`${label(m)}: ${fmt(m, value(m, i))}`);
    for (const [m] of state.budgets) if (!view().objectives.some(([o]) => o === m)) lines.push(`${m}: ${fmt(m, value(m, i))}`);
    if (D.summary[i] >= 0) lines.push(D.summaries[D.summary[i]]);
    if (D.status[i] === 1) lines.push("over budget before training");
    return lines.join("<br>");
  }

  function scatterTraces(xm, ym) {
    const groups = STYLE.map(() => ({ x: [], y: [], customdata: [], text: [] }));
    for (let i = 0; i < N; i++) {
      const c = state.cls[i];
      if (c < 0) continue;
      const x = value(xm, i), y = value(ym, i);
      if (x == null || y == null) continue;
      const g = groups[c];
      g.x.push(x); g.y.push(y); g.customdata.push(i); g.text.push(hoverOf(i));
    }
    const type = N > GL_ABOVE ? "scattergl" : "scatter";
    return [CLASS.searched, CLASS.over, CLASS.feasible, CLASS.front].map((c) => ({
      type, mode: "markers", name: `${STYLE[c].name} (${groups[c].x.length})`, ...groups[c],
      marker: { color: STYLE[c].color, size: STYLE[c].size, line: c === CLASS.front ? { color: "#7f0000", width: 1 } : undefined },
      hovertemplate: "%{text}<extra></extra>",
    }));
  }

  function budgetShapes(xm, ym) {
    const shapes = [];
    for (const [m, , bound] of state.budgets) {
      const line = { type: "line", line: { dash: "dash", color: "#444", width: 1 } };
      if (m === xm) shapes.push({ ...line, xref: "x", yref: "paper", x0: bound, x1: bound, y0: 0, y1: 1 });
      if (m === ym) shapes.push({ ...line, xref: "paper", yref: "y", y0: bound, y1: bound, x0: 0, x1: 1 });
    }
    return shapes;
  }

  function pairs() {
    const objectives = view().objectives.map(([m]) => m);
    const out = [];
    for (let a = 0; a < objectives.length; a++) for (let b = a + 1; b < objectives.length; b++) out.push([objectives[b], objectives[a]]);
    return out;
  }

  function drawScatters(container) {
    // Every plot's box first: each is drawn at the width the flex layout gives it among all.
    container.replaceChildren(...pairs().map(([xm, ym]) => el("div", { class: "plot pair-plot", "data-x": xm, "data-y": ym })));
    for (const div of container.children) {
      const xm = div.dataset.x, ym = div.dataset.y;
      Plotly.newPlot(div, scatterTraces(xm, ym), scatterLayout(xm, ym), CONFIG);
      div.on("plotly_click", (event) => { if (event.points.length) showCard(event.points[0].customdata); });
    }
  }

  function scatterLayout(xm, ym) {
    return {
      margin: { l: 60, r: 10, t: 28, b: 45 }, title: { text: `${label(ym)} vs ${label(xm)}`, font: { size: 13 } },
      xaxis: { title: { text: label(xm) } }, yaxis: { title: { text: label(ym) } }, hovermode: "closest",
      legend: { font: { size: 10 }, orientation: "h", y: -0.25 }, showlegend: true, shapes: budgetShapes(xm, ym),
    };
  }

  function redrawScatters() {
    for (const div of document.querySelectorAll(".pair-plot")) {
      const xm = div.dataset.x, ym = div.dataset.y;
      Plotly.react(div, scatterTraces(xm, ym), scatterLayout(xm, ym), CONFIG);
    }
  }

  function parcoords() {
    const names = view().objectives.map(([m]) => m);
    for (const [m] of state.budgets) if (!names.includes(m)) names.push(m);
    const all = [];
    for (let i = 0; i < N; i++) {
      if (state.cls[i] < 0 || state.cls[i] === CLASS.searched) continue;
      if (names.every((m) => value(m, i) != null)) all.push(i);
    }
    // Lines cost the most to draw: past PARCOORDS_LINES, the front and an even sample of the rest.
    const stride = Math.max(1, Math.ceil(all.length / PARCOORDS_LINES));
    const rows = stride === 1 ? all : all.filter((i, k) => k % stride === 0 || state.cls[i] === CLASS.front);
    state.parcoordsShown = [rows.length, all.length];
    const dimensions = names.map((m) => {
      const values = rows.map((i) => value(m, i));
      const dim = { label: label(m), values };
      const budget = state.budgets.find(([b]) => b === m);
      if (budget && values.length) {
        const lo = Math.min(...values), hi = Math.max(...values);
        dim.constraintrange = budget[1] === "<=" ? [lo, Math.max(lo, budget[2])] : [Math.min(hi, budget[2]), hi];
      }
      return dim;
    });
    const color = rows.map((i) => state.cls[i]);
    return [{
      type: "parcoords", dimensions,
      line: { color, cmin: 0, cmax: 2, colorscale: [[0, STYLE[0].color], [0.5, STYLE[1].color], [1, STYLE[2].color]] },
    }];
  }

  function drawParcoords(redraw) {
    const div = document.getElementById("parcoords");
    const traces = parcoords();
    const [shown, of] = state.parcoordsShown;
    const sampled = shown < of ? `; ${shown} of ${of} lines: the front and an even sample of the rest` : "";
    const text = `objectives and budgets (red: feasible front; budget ranges marked${sampled})`;
    const layout = { margin: { l: 70, r: 70, t: 70, b: 20 }, title: { text, font: { size: 13 }, y: 0.98 } };
    (redraw ? Plotly.react : Plotly.newPlot)(div, traces, layout, CONFIG);
  }

  function drawCurves() {
    const curves = view().curves;
    const first = view().objectives[0][0];
    const line = (y, name, color) => [{ type: "scatter", mode: "lines", line: { shape: "hv", color }, x: curves.evaluations, y, name }];
    const layout = (title, ytitle) => ({ margin: { l: 60, r: 10, t: 28, b: 45 }, title: { text: title, font: { size: 13 } }, xaxis: { title: { text: "evaluations" } }, yaxis: { title: { text: ytitle } } });
    Plotly.newPlot("hypervolume", line(curves.hypervolume, "hypervolume", "#2ca02c"),
      layout("hypervolume of the feasible front (job's budgets)", "hypervolume (scaled, ref 1.1)"), CONFIG);
    Plotly.newPlot("best", line(curves.best, "best", "#d62728"), layout(`best feasible ${label(first)}`, label(first)), CONFIG);
  }

  function budgetControls() {
    const box = document.getElementById("budgets");
    box.replaceChildren();
    state.budgets.forEach(([m, op, bound], k) => {
      const seen = D.values[m] ? D.values[m].filter((v) => v != null) : [];
      const lo = Math.min(bound, ...seen), hi = Math.max(bound, ...seen);
      const step = hi > lo ? (hi - lo) / 500 : 1;
      const range = el("input", { type: "range", min: lo, max: hi, step, value: bound, "aria-label": `${m} ${op} bound`, "data-budget": k });
      const number = el("input", { type: "number", step: "any", value: bound, "aria-label": `${m} ${op}`, "data-budget": k });
      const apply = (v, dragging) => {
        if (!Number.isFinite(v)) return;
        state.budgets[k][2] = v; range.value = v; number.value = v;
        if (dragging) drag(); else update();
      };
      range.addEventListener("input", () => apply(Number(range.value), true));
      range.addEventListener("change", () => apply(Number(range.value), false));
      number.addEventListener("change", () => apply(Number(number.value), false));
      box.append(el("span", { class: "budget" }, `${m} ${op}`, range, number));
    });
    if (!state.budgets.length) box.append(el("span", { class: "muted" }, "no budgets"));
  }

  function resetBudgets() {
    state.budgets = view().budgets.map((b) => [...b]);
  }

  // While a slider is dragged, the latest value is drawn once per frame, and the parallel
  // coordinates (the slowest plot) wait for the release.
  let framed = false;
  function drag() {
    if (framed) return;
    framed = true;
    requestAnimationFrame(() => { framed = false; update(false); });
  }

  function update(full = true) {
    classify();
    redrawScatters();
    if (full) drawParcoords(true);
    paretoTable();
  }

  function paretoTable() {
    const names = view().objectives.map(([m]) => m);
    for (const [m] of state.budgets) if (!names.includes(m)) names.push(m);
    document.getElementById("front-count").textContent = `${state.front.length} on the feasible front`;
    const head = el("tr", {}, el("th", {}, "id"), names.map((m) => el("th", {}, label(m))), el("th", {}, "compression"), el("th", {}, "arch"));
    const rows = state.front.map((i) => el("tr", { class: "pick" + (state.card === i ? " chosen" : ""), "data-id": D.id[i], onclick: () => showCard(i) },
      el("td", {}, D.id[i]), names.map((m) => el("td", {}, fmt(m, value(m, i)))),
      el("td", {}, D.summary[i] >= 0 ? D.summaries[D.summary[i]] : ""), el("td", {}, D.arch[i] >= 0 ? D.archs[D.arch[i]] : "")));
    document.getElementById("pareto").replaceChildren(el("table", {}, head, rows));
  }

  // --- the candidate card --------------------------------------------------------------
  function geneColour(gene, v) {
    if (typeof v !== "number") return "#eee";
    if (gene.endsWith("_bits")) return v >= 32 ? "#f0f0f0" : v >= 16 ? "#fee6ce" : v >= 8 ? "#fdae6b" : v >= 4 ? "#e6550d" : "#a63603";
    const t = Math.max(0, Math.min(1, v));
    return `rgb(${Math.round(255 - 190 * t)},${Math.round(255 - 120 * t)},255)`;
  }

  function strip(layers) {
    // the genes the job searches, and any a layer sets away from its default (stored policies leave defaults out)
    const genes = [...D.searched_genes];
    for (const [, policy] of layers) for (const g of Object.keys(policy)) if (!genes.includes(g)) genes.push(g);
    const head = el("tr", {}, el("th", {}, ""), layers.map(([slot], k) => el("th", { title: slot }, k)));
    const rows = genes.map((g) => el("tr", {}, el("th", {}, g),
      layers.map(([slot, policy]) => {
        const v = g in policy ? policy[g] : D.gene_defaults[g];
        const text = v == null ? "" : g.endsWith("_bits") ? (v >= 32 ? "fp" : v) : typeof v === "number" ? Math.round(100 * v) : String(v);
        return el("td", { style: `background:${geneColour(g, v)}`, title: `${slot}: ${g} ${v}` }, text);
      })));
    return el("table", { class: "strip" }, head, rows);
  }

  function diagram(graph) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = (tag, attrs, text) => {
      const node = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text != null) node.textContent = text;
      return node;
    };
    const columns = Math.max(...graph.nodes.map((n) => n[1])) + 1;
    const rows = Math.max(...graph.nodes.map((n) => n[2])) + 1;
    const dx = columns > 8 ? Math.max(48, 440 / columns) : 100, dy = 46;
    const top = 44; // room for the labels of edges arcing over the others
    const pos = graph.nodes.map(([, x, y]) => [30 + x * dx, top + y * dy]);
    const width = 60 + (columns - 1) * dx, height = top + (rows - 1) * dy + 40;
    const root = svg("svg", { class: "diagram", width, height, viewBox: `0 0 ${width} ${height}` });
    const seen = new Map();
    for (const [a, b, op] of graph.edges) {
      const key = `${a}-${b}`;
      const k = seen.get(key) || 0;
      seen.set(key, k + 1);
      const [x0, y0] = pos[a], [x1, y1] = pos[b];
      const span = Math.abs(x1 - x0) / dx;
      const bend = (span > 1 ? -18 * Math.min(span, 3) : 0) + k * 16; // long or repeated edges arc apart
      const mx = (x0 + x1) / 2, my = (y0 + y1) / 2 + bend;
      root.append(svg("path", { class: "edge", d: `M${x0},${y0} Q${mx},${my} ${x1},${y1}`, "stroke-dasharray": op === "skip_connect" || op === "skip" ? "4 3" : "" }));
      if (op) root.append(svg("text", { class: "op", x: mx, y: (y0 + y1) / 2 + bend / 2 - 3, "text-anchor": "middle" }, op));
    }
    graph.nodes.forEach(([text], n) => {
      const g = svg("g", { class: "node" });
      const w = Math.min(dx - 8, Math.max(26, 6 * text.length + 8));
      g.append(svg("rect", { x: pos[n][0] - w / 2, y: pos[n][1] - 9, width: w, height: 18, rx: 4 }));
      g.append(svg("text", { x: pos[n][0], y: pos[n][1] + 4, "text-anchor": "middle" }, text.length > 18 ? text.slice(0, 17) + "…" : text));
      g.append(svg("title", {}, text));
      root.append(g);
    });
    return root;
  }

  function showCard(i) {
    state.card = i;
    const id = D.id[i];
    const card = D.cards[String(id)];
    const command = `${D.export} ${id}`;
    const box = document.getElementById("card");
    const copy = el("button", { type: "button", onclick: () => navigator.clipboard && navigator.clipboard.writeText(command) }, "copy");
    const status = ["trained", "over budget before training", "failed"][D.status[i]];
    const where = state.cls[i] === CLASS.front ? "on the feasible front" : state.cls[i] === CLASS.feasible ? "feasible, dominated" : state.cls[i] === CLASS.over ? "outside the budgets" : "";
    const metricRows = D.metrics.filter((m) => value(m, i) != null).map((m) => {
      const how = card ? card.measured[m] || "" : ""; // its start shown, all of it on hover
      return el("tr", { title: how }, el("th", {}, label(m)), el("td", {}, fmt(m, value(m, i))), el("td", { class: "muted how" }, how.length > 90 ? how.slice(0, 88) + "…" : how));
    });
    const parts = [
      el("h3", { id: "card-id" }, `#${id}`), el("div", {}, `${status}; ${where}`),
      el("div", { class: "export" }, el("code", { id: "card-export" }, command), copy),
      el("table", {}, metricRows),
    ];
    if (card) {
      if (card.final) parts.push(el("p", {}, `Final, standalone training of search result #${card.final.of} (${card.final.from}, ${card.final.epochs} epochs); the search measured ${fmt("accuracy", card.final.searched_accuracy)}.`));
      if (card.measured.training) parts.push(el("p", { class: "muted" }, `training: ${card.measured.training}`));
      const network = Object.entries(card.network).map(([k, v]) => `${k} ${v}`).join(", ");
      parts.push(el("h4", {}, "compression per layer"), el("div", {}, D.summaries[D.summary[i]] || ""), network ? el("div", { class: "muted" }, network) : null, strip(card.layers));
      parts.push(el("h4", {}, "architecture"), el("div", { class: "muted" }, D.archs[D.arch[i]] || ""));
      for (const graph of D.drawings[card.drawing]) parts.push(el("div", {}, graph.title), diagram(graph));
    } else {
      parts.push(el("p", { class: "muted" }, `The per-layer strip and the drawing are kept for the ${D.detail_limit} best-placed candidates of a large run; the export command above writes them all to card.json.`));
    }
    box.replaceChildren(...parts.filter((p) => p != null));
    for (const row of document.querySelectorAll("tr.pick")) row.classList.toggle("chosen", Number(row.dataset.id) === id);
  }

  // --- the page ------------------------------------------------------------------------
  function header() {
    const c = D.counts;
    const text = `Run ${D.run_dir}, ${D.state}${D.reason ? ` (${D.reason})` : ""}; ${c.ok + c.infeasible + c.failed} of ${D.trials} evaluations: ` +
      `${c.ok} trained, ${c.infeasible} over budget before training, ${c.failed} failed` + (D.finals ? `; ${D.finals} final trainings of the search's picks, which the front is chosen from` : "") +
      `. Search space ${D.space}, strategy ${D.strategy}. Written ${D.written}. Click a point or a row for its card; move a budget to see the front change.`;
    return el("p", { class: "summary" }, text);
  }

  function failures() {
    if (!D.failures.length) return [];
    const rows = D.failures.map(([id, error]) => el("tr", {}, el("td", {}, id), el("td", {}, error)));
    const more = D.failures_left_out ? el("p", { class: "muted" }, `${D.failures_left_out} earlier failures not listed: cosearch pareto ${D.run_dir} --all`) : null;
    return [el("h2", {}, `Failures (${D.counts.failed})`), more, el("table", { id: "failures" }, el("tr", {}, el("th", {}, "id"), el("th", {}, "error")), rows)];
  }

  function build() {
    const select = el("select", { id: "view", "aria-label": "device" }, D.views.map((v, k) => el("option", { value: k }, v.name)));
    select.addEventListener("change", () => { state.view = Number(select.value); hovers = []; resetBudgets(); budgetControls(); classify(); drawAll(); });
    const reset = el("button", { type: "button", onclick: () => { resetBudgets(); budgetControls(); update(); } }, "job's budgets");
    const app = document.getElementById("app");
    app.replaceChildren(
      header(),
      el("div", { class: "controls" }, el("label", {}, "view ", select), el("span", { id: "budgets" }), reset, el("span", { id: "front-count" })),
      el("div", { class: "main" }, el("div", { class: "plots", id: "scatters" }),
        el("aside", { id: "card" }, el("p", { class: "muted" }, "Click a point or a Pareto row to see its candidate here."))),
      el("h2", {}, "Search progress"), el("div", { class: "curves" }, el("div", { class: "plot", id: "hypervolume" }), el("div", { class: "plot", id: "best" })),
      el("h2", {}, "Parallel coordinates"), el("div", { class: "wide", id: "parcoords" }),
      el("h2", {}, "Pareto set under these budgets"), el("div", { id: "pareto" }),
      ...failures(),
    );
    resetBudgets();
    budgetControls();
    timed("classify", classify);
    drawAll();
    if (state.front.length) showCard(state.front[0]);
  }

  const timings = {};
  function timed(name, f) { const t = performance.now(); const out = f(); timings[name] = (timings[name] || 0) + performance.now() - t; return out; }
  function drawAll() {
    timed("scatters", () => drawScatters(document.getElementById("scatters")));
    timed("curves", drawCurves);
    timed("parcoords", () => drawParcoords(false));
    timed("table", paretoTable);
  }

  build();
  timings.parse = parsedMs;
  window.cosearchReport = { timings, state, data: D, frontIds: () => state.front.map((i) => D.id[i]), indexOf };
  document.body.dataset.ready = "1";
})();
