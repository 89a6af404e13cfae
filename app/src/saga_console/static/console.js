// The saga-stack console: plain JS, no framework. Everything it shows comes from the
// console server's read-only /api routes; it never writes.
"use strict";

const STATES = ["RESERVING_STOCK", "CHARGING_PAYMENT", "CONFIRMING", "COMPLETED",
  "REFUNDING", "RELEASING_STOCK", "CANCELLING", "COMPENSATED"];
// The undo steps of the saga (domain/saga.py): marked apart in the timeline.
const COMPENSATIONS = new Set(["refund_payment", "release_stock", "cancel_order"]);
const PAGE = 50;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  // Text only, never HTML: customer ids and error messages are data.
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}

async function getJSON(url) {
  const answer = await fetch(url, { headers: { accept: "application/json" } });
  let body = null;
  try { body = await answer.json(); } catch (_) { /* reported below */ }
  if (!answer.ok) {
    const why = body && (body.message || body.error) ? `${body.error}: ${body.message || ""}` : answer.statusText;
    throw new Error(`${answer.status} ${why}`);
  }
  return body;
}

function showError(id, error) {
  const node = $(id);
  node.hidden = !error;
  node.textContent = error ? String(error.message || error) : "";
}

function ms(value) {
  if (value === null || value === undefined) return "";
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60000) return `${(value / 1000).toFixed(2)} s`;
  return `${(value / 60000).toFixed(1)} min`;
}

// --- sagas -------------------------------------------------------------------------------

const sagaView = { cursors: [null], filters: new URLSearchParams() };

function filterParams() {
  const params = new URLSearchParams();
  for (const option of $("filter-state").selectedOptions) params.append("state", option.value);
  const customer = $("filter-customer").value.trim();
  if (customer) params.set("customer_id", customer);
  const age = Number($("filter-age").value);
  if (age) params.set("since", new Date(Date.now() - age * 1000).toISOString());
  return params;
}

async function loadCounts() {
  const params = new URLSearchParams();
  const since = sagaView.filters.get("since");
  if (since) params.set("since", since);
  const stats = await getJSON(`/api/sagas/stats?${params}`);
  const box = $("counts");
  box.replaceChildren(el("span", { class: "count" }, "total", el("b", {}, stats.total)));
  for (const state of STATES) {
    const chip = el("span", { class: `count state-${state}`, title: `show only ${state}` },
      state, el("b", {}, stats.counts[state] ?? 0));
    chip.addEventListener("click", () => {
      for (const option of $("filter-state").options) option.selected = option.value === state;
      applyFilters();
    });
    box.append(chip);
  }
}

async function loadPage() {
  const params = new URLSearchParams(sagaView.filters);
  params.set("limit", String(PAGE));
  const cursor = sagaView.cursors[sagaView.cursors.length - 1];
  if (cursor) params.set("cursor", cursor);
  const page = await getJSON(`/api/sagas?${params}`);
  const rows = page.items.map((s) => {
    const row = el("tr", {},
      el("td", {}, new Date(s.created_at).toLocaleString()),
      el("td", {}, el("code", {}, s.saga_id.slice(0, 8))),
      el("td", {}, s.customer_id),
      el("td", { class: `state-${s.state}` }, s.state),
      el("td", {}, s.order_status),
      el("td", {}, s.attempts),
      el("td", {}, ms(s.duration_ms)),
      el("td", {}, s.failed_step || ""));
    row.addEventListener("click", () => showSaga(s.saga_id).catch((e) => showError("sagas-error", e)));
    return row;
  });
  $("sagas-table").tBodies[0].replaceChildren(...rows);
  $("page-next").disabled = !page.next_cursor;
  $("page-next").dataset.cursor = page.next_cursor || "";
  $("page-first").disabled = sagaView.cursors.length === 1;
}

async function refreshSagas() {
  try {
    await Promise.all([loadCounts(), loadPage()]);
    showError("sagas-error", null);
  } catch (e) {
    showError("sagas-error", e);
  }
}

function applyFilters() {
  sagaView.filters = filterParams();
  sagaView.cursors = [null];
  refreshSagas();
}

async function showSaga(id) {
  const saga = await getJSON(`/api/sagas/${encodeURIComponent(id)}`);
  $("timeline").hidden = false;
  $("timeline-id").textContent = saga.saga_id;
  const facts = [
    ["state", saga.state], ["order", `${saga.order_id} (${saga.order_status})`],
    ["attempts", saga.attempts], ["created", saga.created_at],
    ["finished", saga.finished_at || "not yet"],
    ["failed step", saga.failed_step || "none"], ["failure reason", saga.last_error || "none"],
    ["trace id", saga.trace_id || "none"],
  ];
  $("timeline-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  let previous = Date.parse(saga.created_at);
  const steps = saga.steps.map((step) => {
    const at = Date.parse(step.at);
    const classes = [COMPENSATIONS.has(step.step) ? "compensation" : "",
      step.outcome === "FAILED" ? "failed" : ""].join(" ").trim();
    const item = el("li", { class: classes },
      el("b", {}, step.step), ` ${step.outcome}`,
      COMPENSATIONS.has(step.step) ? " (compensation)" : "",
      ` ${step.from_state} \u2192 ${step.to_state}`,
      el("div", { class: "gap" }, `+${ms(at - previous)} after the previous, at ${step.at}`,
        ` on ${step.executed_by || "unknown pod"}`),
      step.detail ? el("div", {}, step.detail) : "");
    previous = at;
    return item;
  });
  $("timeline-steps").replaceChildren(...steps);
}

function setUpSagas() {
  $("filter-state").replaceChildren(...STATES.map((s) => el("option", { value: s }, s)));
  $("filter-state").size = 4;
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); applyFilters(); });
  $("page-next").addEventListener("click", () => {
    sagaView.cursors.push($("page-next").dataset.cursor);
    refreshSagas();
  });
  $("page-first").addEventListener("click", () => { sagaView.cursors = [null]; refreshSagas(); });
}

// --- dashboards --------------------------------------------------------------------------

const boardView = { boards: [], timer: null, plots: [], refreshSeconds: 10 };

function panelQuery(target, range, step) {
  const params = new URLSearchParams({
    query: target.expr, namespace: $("var-namespace").value, job: $("var-job").value,
  });
  const end = Math.floor(Date.now() / 1000);
  params.set("start", String(end - range));
  params.set("end", String(end));
  params.set("step", String(step));
  return params;
}

function legend(target, metric) {
  if (!target.legend) return JSON.stringify(metric);
  // Grafana's {{label}} templates.
  return target.legend.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, name) => metric[name] ?? "");
}

async function drawPanel(panel, box, range) {
  // About 240 points over the range, never finer than 15 s (the scrape interval).
  const step = Math.max(15, Math.round(range / 240));
  const results = await Promise.all(panel.targets.map((t) =>
    getJSON(`/api/prometheus/query_range?${panelQuery(t, range, step)}`)
      .then((r) => r.data.result.map((series) => ({ target: t, series })))));
  const series = results.flat();
  const body = box.querySelector(".body");
  if (panel.kind === "stat") {
    const last = series.length ? series[0].series.values.at(-1) : null;
    const value = last ? Number(last[1]) : NaN;
    body.replaceChildren(el("div", { class: "stat" },
      Number.isFinite(value) ? `${+value.toPrecision(4)}${panel.unit ? " " + panel.unit : ""}` : "no data"));
    return;
  }
  // uPlot wants one x array and one y array per series, aligned: join on timestamps.
  const times = [...new Set(series.flatMap((s) => s.series.values.map((v) => v[0])))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const data = [times];
  for (const s of series) {
    const ys = new Array(times.length).fill(null);
    for (const [t, v] of s.series.values) ys[index.get(t)] = Number(v);
    data.push(ys);
  }
  const palette = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6"];
  const opts = {
    width: box.clientWidth - 10,
    height: box.clientHeight - 30,
    series: [{}, ...series.map((s, i) => ({
      label: legend(s.target, s.series.metric), stroke: palette[i % palette.length], width: 1.5,
    }))],
    axes: [{}, { label: panel.unit || "" }],
    legend: { show: series.length <= 6 },
  };
  body.replaceChildren();
  if (!series.length) { body.append(el("div", { class: "muted" }, "no data")); return; }
  if (typeof uPlot === "undefined") { body.append(el("div", { class: "error" }, "uPlot not installed (/static/vendor/uplot/)")); return; }
  boardView.plots.push(new uPlot(opts, data, body));
}

function drawBoard() {
  for (const plot of boardView.plots) plot.destroy();
  boardView.plots = [];
  const board = boardView.boards[Number($("board-select").value) || 0];
  const grid = $("board-grid");
  grid.replaceChildren();
  if (!board) return;
  const range = Number($("board-range").value);
  for (const panel of board.panels) {
    const box = el("div", { class: "panel", title: panel.description || panel.title },
      el("h3", {}, panel.title), el("div", { class: "body" }));
    // Grafana's gridPos: 24 columns, rows of 30 px; CSS grid lines start at 1.
    box.style.gridColumn = `${panel.grid.x + 1} / span ${panel.grid.w}`;
    box.style.gridRow = `${panel.grid.y + 1} / span ${panel.grid.h}`;
    grid.append(box);
    if (panel.kind === "unsupported") {
      box.querySelector(".body").append(el("div", { class: "muted" }, `not drawn: ${panel.unsupported_reason}`));
      continue;
    }
    drawPanel(panel, box, range).catch((e) =>
      box.querySelector(".body").replaceChildren(el("div", { class: "error" }, e.message)));
  }
}

function scheduleRefresh() {
  clearInterval(boardView.timer);
  boardView.timer = null;
  if ($("board-refresh").checked && !$("view-dashboards").hidden) {
    boardView.timer = setInterval(drawBoard, boardView.refreshSeconds * 1000);
  }
}

async function setUpDashboards() {
  const [payload, config] = await Promise.all([getJSON("/api/dashboards"), getJSON("/api/config")]);
  boardView.boards = payload.dashboards;
  boardView.refreshSeconds = config.refreshSeconds || 10;
  $("var-namespace").value = payload.defaults.namespace;
  $("var-job").value = payload.defaults.job;
  $("board-select").replaceChildren(...payload.dashboards.map((b, i) => el("option", { value: i }, b.title)));
  if (payload.errors.length) {
    showError("board-error", payload.errors.map((e) => `${e.file}: ${e.error}`).join("; "));
  }
  for (const id of ["board-select", "board-range", "var-namespace", "var-job"]) {
    $(id).addEventListener("change", drawBoard);
  }
  $("board-refresh").addEventListener("change", scheduleRefresh);
}

// --- views -------------------------------------------------------------------------------

function route() {
  const dashboards = location.hash === "#dashboards";
  $("view-sagas").hidden = dashboards;
  $("view-dashboards").hidden = !dashboards;
  $("nav-sagas").classList.toggle("active", !dashboards);
  $("nav-dashboards").classList.toggle("active", dashboards);
  if (dashboards) drawBoard(); else refreshSagas();
  scheduleRefresh();
}

setUpSagas();
setUpDashboards().catch((e) => showError("board-error", e)).finally(() => {
  window.addEventListener("hashchange", route);
  route();
});
