// FleetLearn aggregator dashboard: polls /api/status, /api/rounds and /api/vehicles once a second and redraws.
// Plain SVG, no libraries, no build step. A bearer token (Aggregator:HttpToken) is taken from the address: /#token=…
"use strict";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9"];

const token = (() => {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) { sessionStorage.setItem("fleetlearn-token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  return sessionStorage.getItem("fleetlearn-token");
})();

async function getJson(path) {
  const response = await fetch(path, { headers: token ? { Authorization: "Bearer " + token } : {}, cache: "no-store" });
  if (response.status === 401) throw new Error("This aggregator needs its bearer token: open this page as /#token=<Aggregator:HttpToken>.");
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

const $ = id => document.getElementById(id);
const fmt = (x, digits = 3) => x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(digits);
const bytes = n => n === null || n === undefined ? "–" : n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(2) + " MiB";
const time = t => t ? new Date(t).toLocaleTimeString() : "–";

function el(name, attrs, parent, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function niceTicks(min, max, count) {
  if (!(max > min)) { max = min + 1; }
  const raw = (max - min) / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(f => f * mag).find(s => s >= raw) || raw;
  const ticks = [];
  for (let t = Math.ceil(min / step - 1e-9) * step; t <= max + step * 1e-9; t += step) ticks.push(+t.toFixed(10));
  return ticks;
}

// A small x/y chart: series of kind "line" (with optional band) or "bar", optional vertical or horizontal marker lines.
function chart(container, spec) {
  const W = 560, H = spec.height || 260, L = 56, R = 14, T = 26, B = 40;
  container.replaceChildren();
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": spec.title || "" }, container);
  const xs = spec.series.flatMap(s => s.points.map(p => p[0]));
  if (xs.length === 0) {
    el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, svg, spec.empty || "no data yet");
    return svg;
  }
  const ys = spec.series.flatMap(s => s.points.flatMap(p => [p[1], ...(p.length > 2 ? [p[2], p[3]] : [])])).filter(Number.isFinite);
  let x0 = spec.xMin ?? Math.min(...xs), x1 = spec.xMax ?? Math.max(...xs);
  const bars = spec.series.some(s => s.kind === "bar");
  if (bars) { x0 -= 0.5; x1 += 0.5; } else if (x0 === x1) { x0 -= 1; x1 += 1; }
  let y0 = spec.yMin ?? Math.min(0, ...ys), y1 = spec.yMax ?? Math.max(...ys);
  if (spec.yMax === undefined) y1 += 0.08 * (y1 - y0); // headroom under the legend
  if (!(y1 > y0)) y1 = y0 + 1;
  if (spec.vline !== undefined) x1 = Math.max(x1, spec.vline);
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R), sy = y => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  for (const t of niceTicks(y0, y1, 4)) {
    el("line", { x1: L, x2: W - R, y1: sy(t), y2: sy(t), stroke: "#e3e7eb" }, svg);
    el("text", { x: L - 6, y: sy(t) + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6470" }, svg, spec.yFormat ? spec.yFormat(t) : String(t));
  }
  const xTicks = spec.xTicks || niceTicks(x0, x1, 6).filter(t => !spec.integerX || Number.isInteger(t));
  for (const t of xTicks) el("text", { x: sx(t), y: H - B + 16, "text-anchor": "middle", "font-size": 11, fill: "#5b6470" }, svg, spec.xFormat ? spec.xFormat(t) : String(t));
  el("line", { x1: L, x2: W - R, y1: sy(y0), y2: sy(y0), stroke: "#8a939c" }, svg);
  el("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "font-size": 12, fill: "#1b1f24" }, svg, spec.xLabel || "");
  el("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 12, fill: "#1b1f24", transform: `rotate(-90 14 ${(T + H - B) / 2})` }, svg, spec.yLabel || "");
  const barSeries = spec.series.filter(s => s.kind === "bar");
  const slot = (sx(x0 + 1) - sx(x0)) * 0.8, width = Math.max(1, slot / Math.max(1, barSeries.length));
  spec.series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    const g = el("g", { class: "series", "data-name": s.name }, svg);
    if (s.kind === "bar") {
      const k = barSeries.indexOf(s);
      for (const [x, y] of s.points) {
        const left = sx(x) - slot / 2 + k * width, top = sy(Math.max(y, y0));
        el("rect", { x: left, y: top, width: width - 1, height: Math.max(0, sy(y0) - top), fill: color, class: "point" }, g).appendChild(el("title", {}, null, `${s.name}: ${y}`));
      }
      return;
    }
    const band = s.points.filter(p => p.length > 2);
    if (band.length > 1) {
      const d = band.map((p, j) => `${j ? "L" : "M"}${sx(p[0])},${sy(p[3])}`).join("") + band.slice().reverse().map(p => `L${sx(p[0])},${sy(p[2])}`).join("") + "Z";
      el("path", { d, fill: color, "fill-opacity": 0.15, stroke: "none" }, g);
    }
    el("path", { d: s.points.map((p, j) => `${j ? "L" : "M"}${sx(p[0])},${sy(p[1])}`).join(""), fill: "none", stroke: color, "stroke-width": 2 }, g);
    for (const p of s.points) {
      if (p.length > 2) el("line", { x1: sx(p[0]), x2: sx(p[0]), y1: sy(p[2]), y2: sy(p[3]), stroke: color, "stroke-width": 1 }, g);
      el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3.5, fill: color, class: "point" }, g).appendChild(el("title", {}, null, `${s.name} @ ${p[0]}: ${fmt(p[1])}`));
    }
  });
  if (spec.vline !== undefined) {
    el("line", { x1: sx(spec.vline), x2: sx(spec.vline), y1: T, y2: sy(y0), stroke: "#c0392b", "stroke-dasharray": "5 4", "stroke-width": 1.5 }, svg);
    el("text", { x: sx(spec.vline) - 4, y: T + 10, "text-anchor": "end", "font-size": 11, fill: "#c0392b" }, svg, spec.vlineLabel || "");
  }
  let lx = L + 4;
  spec.series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    el("rect", { x: lx, y: 6, width: 10, height: 10, fill: color }, svg);
    const label = el("text", { x: lx + 14, y: 15, "font-size": 11, fill: "#1b1f24" }, svg, s.name);
    lx += 24 + 6.5 * s.name.length;
    void label;
  });
  return svg;
}

function histogram(values, budget) {
  const top = Math.max(...values, budget ?? 0, 1e-9);
  const bins = 12, w = top / bins, counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor(v / w))]++;
  return { points: counts.map((c, i) => [(i + 0.5) * w, c]), width: w };
}

function row(cells, classes) {
  const tr = document.createElement("tr");
  cells.forEach((c, i) => { const td = document.createElement("td"); td.textContent = c; if (classes && classes[i]) td.className = classes[i]; tr.appendChild(td); });
  return tr;
}

function render(status, rounds, vehicles) {
  $("state").textContent = status.running ? "running" : "stopped";
  $("state").className = "badge " + (status.running ? "running" : "stopped");
  $("updated").textContent = "updated " + time(status.serverTime);
  $("round").textContent = status.currentRound || "–";
  const phase = status.phase;
  $("phase-name").textContent = phase ? "phase: " + phase.phase : "between rounds";
  const share = phase && phase.expected > 0 ? Math.min(1, phase.answered / phase.expected) : 0;
  $("progress-bar").style.width = (100 * share).toFixed(1) + "%";
  $("progress-text").textContent = phase ? `${phase.answered} of ${phase.expected} vehicles answered in round ${phase.round}'s ${phase.phase} phase` : "no phase in progress";
  $("model-version").textContent = status.modelVersion;
  $("rounds-done").textContent = `${status.roundsApplied} / ${status.roundsAborted}`;
  $("checked-in").textContent = status.checkedIn;
  $("updates").textContent = `${status.acceptedUpdates} / ${status.duplicateUpdates}`;
  $("bytes").textContent = `${bytes(status.bytesReceived)} / ${bytes(status.bytesSent)}`;
  $("privacy").textContent = status.privacy === "off" ? "no DP" : `${status.privacy} DP, δ = ${status.delta}` + (status.epsilonBudget ? `, budget ε ≤ ${status.epsilonBudget}` : "");
  $("activity").textContent = status.activity;

  const acc = status.accuracy;
  chart($("accuracy-chart"), {
    title: "fleet accuracy", xLabel: "model version", yLabel: "accuracy", yMin: 0, yMax: 1, integerX: true,
    empty: "no evaluation reports yet",
    series: [{ name: "mean ± 95 % CI over vehicles", points: acc.map(a => [a.modelVersion, a.accuracy, Math.max(0, a.accuracy - 1.96 * a.standardError), Math.min(1, a.accuracy + 1.96 * a.standardError)]) }],
  });
  const last = acc[acc.length - 1];
  $("accuracy-note").textContent = last
    ? `Model ${last.modelVersion}: ${fmt(last.accuracy)} over ${last.frames} hold-out frames from ${last.reports} vehicles (lowest ${fmt(last.min)}, highest ${fmt(last.max)}); `
      + (last.noisedReports > 0 ? `${last.noisedReports} of ${last.reports} reports carry Laplace noise (local DP), which widens the interval.` : "no report is noised: the interval is the spread between vehicles.")
    : "Vehicles score each new global model on their own hold-out frames and report the accuracy on up/eval.";

  const eps = vehicles.map(v => v.epsilon).filter(e => e !== null);
  const h = histogram(eps, status.epsilonBudget);
  chart($("epsilon-chart"), {
    title: "epsilon histogram", xLabel: "ε spent (vehicle-level)", yLabel: "vehicles", yMin: 0, xMin: 0,
    empty: status.privacy === "off" ? "no differential privacy in this run" : "no ε spent yet",
    series: eps.length ? [{ name: "vehicles", kind: "bar", points: h.points.map(p => [p[0] / h.width - 0.5, p[1]]) }] : [],
    xFormat: t => fmt((t + 0.5) * h.width, 2), xTicks: eps.length ? [0, 3, 6, 9, 11] : undefined,
    vline: status.epsilonBudget ? status.epsilonBudget / h.width - 0.5 : undefined, vlineLabel: "budget",
  });
  $("epsilon-note").textContent = eps.length ? `${eps.length} vehicles; largest ε ${fmt(Math.max(...eps))}` + (status.epsilonBudget ? ` of a budget of ${status.epsilonBudget}` : "") : "";

  chart($("rounds-chart"), {
    title: "participants", xLabel: "round", yLabel: "vehicles", yMin: 0, integerX: true,
    series: [
      { name: "selected", kind: "bar", points: rounds.map(r => [r.round, r.cohortSize]) },
      { name: "participants", kind: "bar", points: rounds.map(r => [r.round, r.participants]) },
    ],
  });
  const traffic = rounds.filter(r => r.bytesReceived !== null);
  chart($("bytes-chart"), {
    title: "bytes", xLabel: "round", yLabel: "KiB", yMin: 0, integerX: true, height: 200,
    empty: "no round of this run has closed yet",
    series: [
      { name: "received", kind: "bar", points: traffic.map(r => [r.round, r.bytesReceived / 1024]) },
      { name: "published", kind: "bar", points: traffic.map(r => [r.round, r.bytesSent / 1024]) },
    ],
  });

  const reasons = Object.entries(status.rejectedByReason).sort((a, b) => b[1] - a[1]);
  chart($("rejections-chart"), {
    title: "rejections", xLabel: "reason", yLabel: "messages", yMin: 0, empty: "no message rejected",
    series: reasons.length ? [{ name: "rejected", kind: "bar", color: "#d55e00", points: reasons.map((r, i) => [i, r[1]]) }] : [],
    xTicks: reasons.map((_, i) => i), xFormat: i => reasons[i] ? reasons[i][0] : "",
  });

  const tbody = $("rounds-table").tBodies[0];
  tbody.replaceChildren(...rounds.slice().reverse().slice(0, 50).map(r => row(
    [r.round, r.status, `${r.modelVersionIn} → ${r.modelVersionOut ?? "–"}`, r.cohortSize, r.participants, fmt(r.trainLoss, 4), bytes(r.bytesReceived), bytes(r.bytesSent), time(r.closedAt), r.note],
    [null, r.status])));
  const vbody = $("vehicles-table").tBodies[0];
  vbody.replaceChildren(...vehicles.slice(0, 200).map(v => row(
    [v.vehicle, v.participations, v.lastRound ?? "–", time(v.lastSeen), fmt(v.epsilon), v.rejected, v.lastAccuracy === null ? "–" : `${fmt(v.lastAccuracy)} (v${v.lastEvaluatedVersion})`])));
}

async function poll() {
  try {
    const [status, rounds, vehicles] = await Promise.all([getJson("api/status"), getJson("api/rounds"), getJson("api/vehicles")]);
    render(status, rounds, vehicles);
    $("error").hidden = true;
  } catch (e) {
    $("error").textContent = e.message;
    $("error").hidden = false;
    $("state").textContent = "unreachable";
    $("state").className = "badge stopped";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
