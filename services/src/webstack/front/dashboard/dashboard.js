// The dashboard's only script (webstack/front/dashboard.py): every second,
// ask /-/dashboard/data for the points the page lacks, keep as many as the
// front keeps, and draw one chart per figure with a line per route on a
// canvas, by hand.  The newest figures go into the table below the charts,
// each cell carrying its number in data-value (what a test reads back).
"use strict";

const CHARTS = [
  { figure: "rate", title: "Requests per second", scale: 1, digits: 1 },
  { figure: "p99", title: "p99 response time (ms)", scale: 1000, digits: 1 },
  { figure: "in_flight", title: "Requests in flight", scale: 1, digits: 0 },
  { figure: "cancellations", title: "Cancellations per second", scale: 1, digits: 2 },
  { figure: "errors", title: "5xx answers per second", scale: 1, digits: 2 },
  { figure: "replicas_up", title: "Replicas up", scale: 1, digits: 0 },
];
const TOTALS = ["requests", "errors", "cancellations"];
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                 "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
const PERIOD_MS = 1000;

const state = { routes: [], times: [], sources: [], series: {}, capacity: 300, interval: 1 };
const canvases = {};

function colour(route) {
  return COLOURS[state.routes.indexOf(route) % COLOURS.length];
}

function element(tag, attributes, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// The page's frame: a chart per figure, the legend, a table row per route.
function build(update) {
  state.routes = update.routes;
  state.capacity = update.capacity;
  state.interval = update.interval;
  document.getElementById("window").textContent = update.window;
  const charts = document.getElementById("charts");
  for (const chart of CHARTS) {
    const figure = element("figure");
    figure.append(element("figcaption", {}, chart.title));
    const canvas = element("canvas", { "data-figure": chart.figure, "data-segments": "0" });
    figure.append(canvas);
    charts.append(figure);
    canvases[chart.figure] = canvas;
  }
  const legend = document.getElementById("legend");
  const rows = document.querySelector("#now tbody");
  for (const route of state.routes) {
    const item = element("li", {}, "");
    const swatch = element("i");
    swatch.style.background = colour(route);
    item.append(swatch, route);
    legend.append(item);
    const row = element("tr", { "data-route": route });
    row.append(element("td", {}, route));
    for (const name of [...CHARTS.map((c) => c.figure), ...TOTALS.map((t) => "total_" + t)]) {
      row.append(element("td", { "data-route": route, "data-figure": name, "data-value": "" }, "–"));
    }
    rows.append(row);
    state.series[route] = {};
    for (const chart of CHARTS) state.series[route][chart.figure] = [];
  }
}

// Append the new points and forget those beyond the front's own ring.
function merge(update) {
  state.times.push(...update.times);
  state.sources.push(...update.sources);
  const extra = Math.max(0, state.times.length - state.capacity);
  state.times.splice(0, extra);
  state.sources.splice(0, extra);
  for (const route of state.routes) {
    for (const chart of CHARTS) {
      const values = state.series[route][chart.figure];
      values.push(...update.series[route][chart.figure]);
      values.splice(0, extra);
    }
  }
}

// A scale of at most four steps of 1, 2 or 5 (times a power of ten) that
// reaches the highest value; whole steps for counts.
function scaleFor(highest, whole) {
  if (!(highest > 0)) return { step: whole ? 1 : 0.25, steps: whole ? 1 : 4 };
  const rough = highest / 4;
  const power = Math.pow(10, Math.floor(Math.log10(rough)));
  let step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
  if (whole) step = Math.max(1, Math.round(step));
  return { step, steps: Math.max(1, Math.ceil(highest / step - 1e-9)) };
}

function draw(chart, canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 400;
  const height = canvas.clientHeight || 180;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const left = 48, right = 8, top = 8, bottom = 20;
  const plotWidth = width - left - right, plotHeight = height - top - bottom;

  let highest = 0;
  for (const route of state.routes) {
    for (const v of state.series[route][chart.figure]) {
      if (v !== null) highest = Math.max(highest, v * chart.scale);
    }
  }
  const { step, steps } = scaleFor(highest, chart.digits === 0);
  const ceiling = step * steps;
  const newest = state.times.length ? state.times[state.times.length - 1] : 0;
  const span = state.capacity * state.interval;
  const x = (t) => left + plotWidth * (1 - (newest - t) / span);
  const y = (v) => top + plotHeight * (1 - (v * chart.scale) / ceiling);

  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#666";
  g.strokeStyle = "#e4e4e4";
  g.lineWidth = 1;
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (let i = 0; i <= steps; i++) {
    const value = step * i;
    const at = top + plotHeight * (1 - i / steps);
    g.beginPath();
    g.moveTo(left, at);
    g.lineTo(left + plotWidth, at);
    g.stroke();
    g.fillText(Number(value.toPrecision(3)).toString(), left - 4, at);
  }
  g.textBaseline = "top";
  g.textAlign = "left";
  g.fillText(`−${span} s`, left, top + plotHeight + 4);
  g.textAlign = "right";
  g.fillText("now", left + plotWidth, top + plotHeight + 4);

  let segments = 0;
  g.lineWidth = 1.5;
  for (const route of state.routes) {
    const values = state.series[route][chart.figure];
    g.strokeStyle = colour(route);
    g.beginPath();
    let drawing = false;
    for (let i = 0; i < values.length; i++) {
      if (values[i] === null) { drawing = false; continue; }
      const px = x(state.times[i]), py = y(values[i]);
      if (drawing) { g.lineTo(px, py); segments++; } else { g.moveTo(px, py); drawing = true; }
    }
    g.stroke();
  }
  canvas.dataset.segments = String(segments);
}

function show(value, digits, scale) {
  return value === null || value === undefined ? "–" : (value * scale).toFixed(digits);
}

// The newest figures into the table, each with its number as the data says.
function tabulate(update) {
  const last = state.times.length - 1;
  for (const route of state.routes) {
    for (const chart of CHARTS) {
      const value = last >= 0 ? state.series[route][chart.figure][last] : null;
      const cell = document.querySelector(`td[data-route="${route}"][data-figure="${chart.figure}"]`);
      cell.dataset.value = value === null ? "" : String(value);
      cell.textContent = show(value, chart.digits, chart.scale);
    }
    for (const total of TOTALS) {
      const value = (update.totals[route] || {})[total];
      const cell = document.querySelector(`td[data-route="${route}"][data-figure="total_${total}"]`);
      cell.dataset.value = value === undefined ? "" : String(value);
      cell.textContent = show(value, 0, 1);
    }
  }
  if (last >= 0) {
    document.body.dataset.time = String(state.times[last]);
    document.getElementById("now-time").textContent =
      new Date(state.times[last] * 1000).toLocaleTimeString();
  }
}

function describeSource(update) {
  const line = document.getElementById("source");
  const prometheus = update.prometheus;
  if (update.source === "prometheus") {
    line.textContent = `Figures from Prometheus (${prometheus.url}), every second.`;
  } else if (prometheus.state === "off") {
    line.textContent = "Figures from the front's own counters (front.prometheus_url is not set), every second.";
  } else {
    line.textContent = `Figures from the front's own counters: Prometheus (${prometheus.url}) failed: ${prometheus.detail}.`;
  }
  line.className = "source " + (update.source || "");
  document.body.dataset.source = update.source || "";
}

async function refresh() {
  const last = state.times.length ? state.times[state.times.length - 1] : null;
  const response = await fetch("/-/dashboard/data" + (last === null ? "" : "?since=" + last),
                               { cache: "no-store" });
  if (!response.ok) throw new Error(`/-/dashboard/data answered HTTP ${response.status}`);
  const update = await response.json();
  // With several front workers, each keeps its own ring (of the same sums,
  // on the same seconds): say whose the newest point is.
  if (update.times.length) document.body.dataset.worker = response.headers.get("x-worker") || "";
  if (!state.routes.length) build(update);
  merge(update);
  for (const chart of CHARTS) draw(chart, canvases[chart.figure]);
  tabulate(update);
  describeSource(update);
  document.body.dataset.state = "drawn";
  document.body.dataset.frames = String(Number(document.body.dataset.frames) + 1);
}

async function loop() {
  try {
    await refresh();
  } catch (error) {
    document.body.dataset.state = "error";
    const line = document.getElementById("source");
    line.textContent = `The figures cannot be read: ${error.message}. Trying again every second.`;
    line.className = "source failed";
  }
  setTimeout(loop, PERIOD_MS);
}

window.addEventListener("resize", () => {
  if (state.routes.length) for (const chart of CHARTS) draw(chart, canvases[chart.figure]);
});
loop();
