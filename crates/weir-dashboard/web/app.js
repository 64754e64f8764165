// Weir's dashboard: backfills from /api/history, then follows /api/events (server-sent
// events) and reconnects by itself. Controls post to the token-guarded API with a bearer
// token; without a token configured on the server (or typed in here) they stay disabled.

import uPlot from "/assets/uPlot.esm.js";
import {
  SLO_COLOR, columns, describeChange, destColor, destinations, fmtPct, fmtSecs, fmtT,
  fmtWeights, headline, recordFlags, replicaState, shares, shieldChanged, signals, stack,
  weightList,
} from "/assets/view.js";

const HISTORY = 2000;
const LOG_ROWS = 300;
const TOKEN_KEY = "weir.token";

const app = {
  records: [],
  state: null,
  setup: null,
  runId: null,
  charts: null,
  chartShape: "",
  conn: "connecting",
  lastReceived: null,
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  renderQueued: false,
  logBuiltFor: -1,
  logFirstSeq: null,
};

const $ = (id) => document.getElementById(id);

/** Creates an element; `attrs` may hold `class`, `text`, dataset entries (`data-*`) and properties. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("data-") || k === "title" || k === "role" || k.startsWith("aria-")) el.setAttribute(k, v);
    else el[k] = v;
  }
  for (const c of children.flat()) {
    if (c == null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// ---------------------------------------------------------------- data

async function getJson(path) {
  const resp = await fetch(path, { cache: "no-store" });
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

async function refreshState() {
  try {
    app.state = await getJson("/api/state");
    if (app.state.setup) app.setup = app.state.setup;
    const run = app.setup?.run_id ?? null;
    if (run && app.runId && run !== app.runId) {
      // Weir restarted: what we hold belongs to the previous run.
      app.records = [];
      app.logBuiltFor = -1;
    }
    if (run) app.runId = run;
  } catch (e) {
    console.warn("state", e);
  }
  schedule();
}

let stateTimer = null;
function refreshStateSoon() {
  if (stateTimer) return;
  stateTimer = setTimeout(() => {
    stateTimer = null;
    refreshState();
  }, 1000);
}

async function backfill() {
  try {
    await refreshState();
    const history = await getJson(`/api/history?limit=${HISTORY}`);
    const last = history.length ? history[history.length - 1].seq : -1;
    // Keep records that arrived live while the history was on its way.
    const newer = app.records.filter((r) => r.seq > last);
    app.records = history.concat(newer);
    app.logBuiltFor = -1;
    schedule();
  } catch (e) {
    console.warn("backfill", e);
  }
}

function onRecord(rec) {
  app.lastReceived = Date.now();
  const last = app.records.length ? app.records[app.records.length - 1] : null;
  if (last && rec.seq <= last.seq) {
    const known = app.records.find((r) => r.seq === rec.seq);
    if (known && known.at_s === rec.at_s) return; // already have it (the stream starts with the latest)
    // Sequence numbers went back: the controller restarted. Start over.
    app.records = [];
    app.logBuiltFor = -1;
    backfill();
    return;
  }
  if (last && rec.seq > last.seq + 1) {
    // Missed some while disconnected: fetch them.
    app.records.push(rec);
    backfill();
    return;
  }
  app.records.push(rec);
  if (app.records.length > HISTORY) app.records.splice(0, app.records.length - HISTORY);
  refreshStateSoon();
  schedule();
}

let source = null;
let retryMs = 1000;

function connect() {
  setConn(app.records.length ? "reconnecting" : "connecting");
  source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    retryMs = 1000;
    setConn("live");
  });
  // Every reconnection: fill what was missed, and notice a restarted Weir (its sequence
  // numbers start again at 0, and a replayed scenario can repeat the same times).
  let opened = false;
  source.addEventListener("open", () => {
    if (opened) backfill();
    opened = true;
  });
  source.addEventListener("decision", (e) => {
    try {
      onRecord(JSON.parse(e.data));
    } catch (err) {
      console.warn("bad event", err);
    }
  });
  source.addEventListener("lagged", () => backfill());
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (an HTTP error or the server went away): retry ourselves.
      setConn("offline");
      source.close();
      setTimeout(async () => {
        await backfill();
        connect();
      }, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    } else {
      // The browser retries by itself; the "open" handler fills the gap once it is back.
      setConn("reconnecting");
    }
  });
}

function setConn(c) {
  app.conn = c;
  document.body.dataset.conn = c;
  schedule();
}

// ---------------------------------------------------------------- rendering

function schedule() {
  if (app.renderQueued) return;
  app.renderQueued = true;
  setTimeout(() => {
    app.renderQueued = false;
    render();
  }, 120);
}

function render() {
  const latest = app.records[app.records.length - 1];
  renderHeader(latest);
  renderStatus(latest);
  renderControls(latest);
  if (!latest) return;
  const previous = app.records[app.records.length - 2];
  renderNow(latest, previous);
  renderCards(latest);
  renderCharts();
  renderLog();
  renderSignals(latest);
}

function pill(text, kind, title) {
  return h("span", { class: `pill ${kind}`, text, title });
}

function renderHeader(latest) {
  if (app.setup) $("title").textContent = app.setup.title;
  const pills = [];
  const connText = { live: "live", connecting: "connecting…", reconnecting: "reconnecting…", offline: "offline — retrying" }[app.conn];
  pills.push(pill(connText, app.conn === "live" ? "ok" : "warn", "connection to the event stream"));
  if (latest) {
    pills.push(pill(`mode: ${latest.mode.replace("_", "-")}`, latest.mode === "enforce" ? "neutral" : "warn", "enforce applies weights; shadow only records them"));
    pills.push(pill(`policy: ${latest.policy}`, "neutral"));
    if (latest.shield.paused) pills.push(pill("paused", "warn", "an operator paused Weir: the weights are held"));
    if (latest.shield.override_) pills.push(pill(`override until ${fmtT(latest.shield.override_.until_s)}`, "warn"));
    if (latest.shield.fail_safe_engaged) pills.push(pill("fail-safe", "bad", "observations are stale: fail-safe weights in force"));
    pills.push(pill(`${Math.max(app.state?.decisions ?? 0, latest.seq + 1)} decisions`, "neutral"));
  }
  $("pills").replaceChildren(...pills);
}

function renderNow(latest, previous) {
  const hl = headline(latest, app.setup, previous);
  const el = $("headline");
  el.textContent = hl.text;
  el.className = `headline ${hl.troubled.length ? "troubled" : "calm"}`;
  $("why").replaceChildren(...hl.why.map((w) => h("li", { text: w })));
  $("description").textContent = app.setup?.description ?? "";
}

function renderCards(latest) {
  const names = destinations(latest);
  const now = shares(latest.decision.weights);
  const cards = names.map((name, i) => {
    let state;
    if (i === 0) {
      const cpu = latest.observation.primary.cpu.value;
      const cap = app.setup?.slo.primary_cpu_max;
      state = {
        level: cpu == null ? "unknown" : cap != null && cpu > cap ? "bad" : "ok",
        text: cpu == null ? "CPU unknown" : `CPU ${fmtPct(cpu)}${cap != null ? ` of ${fmtPct(cap)} cap` : ""}`,
      };
    } else {
      state = replicaState(latest.observation.replicas[i - 1] ?? {}, app.setup?.slo);
    }
    return h(
      "div",
      { class: `card ${state.level}`, "data-destination": name },
      h("div", { class: "card-name" }, h("span", { class: "swatch", style: `background:${destColor(i)}` }), name),
      h("div", { class: "card-state", text: state.text }),
      h("div", { class: "bar" }, h("span", { style: `width:${(100 * now[i]).toFixed(1)}%;background:${destColor(i)}` })),
      h("div", { class: "card-share", text: `${fmtPct(now[i])} of reads` }),
    );
  });
  $("cards").replaceChildren(...cards);
}

// ---------------------------------------------------------------- charts

function chartWidth(el) {
  return Math.max(260, el.clientWidth - 4);
}

function makeChart(id, series, { yRange, yFmt, stacked } = {}) {
  const fig = $(id);
  const el = fig.querySelector(".plot");
  el.replaceChildren();
  const opts = {
    width: chartWidth(el),
    height: 170,
    cursor: { sync: { key: "weir" } },
    scales: { x: { time: false }, y: yRange ? { range: yRange } : { auto: true } },
    axes: [
      { values: (u, ticks) => ticks.map(fmtT), size: 28 },
      { size: 46, values: yFmt ? (u, ticks) => ticks.map(yFmt) : undefined },
    ],
    series: [{ label: "t", value: (u, v, si, di) => (di == null ? `${fmtT(lastKnown(u.data[0] ?? []))} (latest)` : fmtT(v)) }, ...series],
    legend: { live: true },
  };
  const u = new uPlot(opts, [[], ...series.map(() => [])], el);
  fig.dataset.points = "0";
  return { u, fig, el, stacked };
}

/** The latest known value of a column (what the legend shows while the cursor is away). */
function lastKnown(col) {
  for (let k = col.length - 1; k >= 0; k--) if (col[k] != null) return col[k];
  return null;
}

/** A legend formatter that shows the hovered value, or the latest one. */
function legend(fmt) {
  return (u, v, si, di) => {
    const value = di == null ? lastKnown(u.data[si] ?? []) : v;
    return value == null ? "—" : fmt(value);
  };
}

function lineSeries(label, color, { fmt, ...extra } = {}) {
  return { label, stroke: color, width: 1.6, spanGaps: false, points: { show: false }, value: legend(fmt ?? ((v) => v.toFixed(2))), ...extra };
}

function sloSeries(label, fmt) {
  return { label, stroke: SLO_COLOR, width: 1.2, dash: [6, 4], points: { show: false }, value: legend(fmt ?? String) };
}

function buildCharts(names) {
  const replicas = names.slice(1);
  const fmt = (d) => (v) => v.toFixed(d);
  const charts = {};
  charts.lag = makeChart("chart-lag", [
    ...replicas.map((n, i) => lineSeries(n, destColor(i + 1), { fmt: fmtSecs })),
    sloSeries("SLO", fmtSecs),
  ], { yFmt: (v) => `${v}s` });
  // Stacked: layer i is destinations i..n summed, drawn in order so each keeps its band.
  // The legend shows each destination's own weight, not the running sum.
  charts.weights = makeChart("chart-weights", names.map((n, i) => ({
    label: n,
    stroke: destColor(i),
    fill: `${destColor(i)}cc`,
    width: 1,
    points: { show: false },
    paths: uPlot.paths.stepped({ align: 1 }),
    value: (u, v, si, di) => {
      const raw = app.charts?.raw?.weight?.[si - 1];
      const k = di ?? (raw ? raw.length - 1 : -1);
      return raw && raw[k] != null ? `${raw[k]}` : "—";
    },
  })), { yRange: [0, 100], stacked: true });
  charts.cpu = makeChart("chart-cpu", [
    lineSeries("primary CPU", destColor(0), { fmt: (v) => `${v.toFixed(0)}%` }),
    sloSeries("cap", (v) => `${v.toFixed(0)}%`),
  ], { yFmt: (v) => `${v}%` });
  charts.p99 = makeChart("chart-p99", [
    lineSeries("primary", destColor(0), { fmt: fmt(1) }),
    ...replicas.map((n, i) => lineSeries(n, destColor(i + 1), { fmt: fmt(1) })),
    sloSeries("SLO", (v) => `${v} ms`),
  ]);
  charts.stale = makeChart("chart-stale", [
    lineSeries("expected stale", "#d98c00", { fill: "#d98c0033", fmt: (v) => `${v.toFixed(1)}%`, paths: uPlot.paths.stepped({ align: 1 }) }),
    lineSeries("expected failed", "#b3261e", { fmt: (v) => `${v.toFixed(1)}%`, paths: uPlot.paths.stepped({ align: 1 }) }),
  ], { yFmt: (v) => `${v}%` });
  charts.reward = makeChart("chart-reward", [lineSeries("reward", "#444", { fmt: fmt(2) })]);
  return charts;
}

function renderCharts() {
  const latest = app.records[app.records.length - 1];
  const names = destinations(latest);
  const shape = names.join("|");
  if (!app.charts || app.chartShape !== shape) {
    app.charts = buildCharts(names);
    app.chartShape = shape;
  }
  const c = columns(app.records, app.setup);
  app.charts.raw = c;
  const set = (chart, data) => {
    chart.u.setData([c.x, ...data]);
    chart.fig.dataset.points = String(c.x.length);
  };
  set(app.charts.lag, [...c.lag, c.sloLag]);
  set(app.charts.weights, stack(c.weight));
  set(app.charts.cpu, [c.cpu, c.cpuCap]);
  set(app.charts.p99, [c.p99Primary, ...c.p99, c.p99Slo]);
  set(app.charts.stale, [c.expectedStale, c.expectedFailed]);
  set(app.charts.reward, [c.reward]);
}

window.addEventListener("resize", () => {
  if (!app.charts) return;
  for (const [k, chart] of Object.entries(app.charts)) {
    if (k === "raw") continue;
    chart.u.setSize({ width: chartWidth(chart.el), height: 170 });
  }
});

// ---------------------------------------------------------------- decision log

function logEntry(rec, previous) {
  const names = destinations(rec);
  const change = previous ? describeChange(previous.decision.weights, rec.decision.weights, names) : "first decision";
  const flags = recordFlags(rec);
  const quiet = !change && flags.length === 0;
  const el = h(
    "details",
    {
      class: `entry${quiet ? " quiet" : ""}${change ? " changed" : ""}`,
      "data-seq": String(rec.seq),
      "data-weights": weightList(rec.decision.weights).join("/"),
      "data-flags": flags.map((f) => f.kind).join(" "),
    },
    h(
      "summary",
      {},
      h("span", { class: "t", text: fmtT(rec.at_s) }),
      h("span", { class: "w", text: fmtWeights(rec.decision.weights) }),
      h("span", { class: "change", text: change || "no change" }),
      h("span", { class: "flags" }, flags.map((f) => h("span", { class: `flag ${f.kind}`, text: f.text }))),
      h("span", { class: "reason", text: rec.decision.proposal.reason }),
    ),
  );
  el.addEventListener("toggle", () => {
    if (el.open && !el.querySelector(".detail")) el.append(detail(rec, previous));
  });
  return el;
}

function renderLog() {
  const log = $("log");
  const recs = app.records;
  const lastSeq = recs[recs.length - 1].seq;
  if (app.logBuiltFor === lastSeq) return;
  const firstShown = Math.max(0, recs.length - LOG_ROWS);
  const rebuild = app.logBuiltFor < 0 || app.logFirstSeq == null || !log.firstElementChild;
  if (rebuild) {
    const frag = document.createDocumentFragment();
    for (let k = recs.length - 1; k >= firstShown; k--) frag.append(logEntry(recs[k], recs[k - 1]));
    log.replaceChildren(frag);
  } else {
    // Prepend what is new, drop what fell off the end.
    const newest = Number(log.firstElementChild.dataset.seq);
    const frag = document.createDocumentFragment();
    for (let k = recs.length - 1; k >= firstShown && recs[k].seq > newest; k--) frag.append(logEntry(recs[k], recs[k - 1]));
    // The fragment is newest first; insert it before the current first entry.
    log.prepend(frag);
    while (log.children.length > LOG_ROWS) log.lastElementChild.remove();
  }
  app.logBuiltFor = lastSeq;
  app.logFirstSeq = recs[firstShown].seq;
  $("log-count").textContent = recs.length > LOG_ROWS ? `latest ${LOG_ROWS} of ${recs.length} held` : `${recs.length}`;
}

$("only-changes").addEventListener("change", (e) => {
  $("log").classList.toggle("only-changes", e.target.checked);
});

function table(head, rows, cls) {
  return h(
    "table",
    { class: cls },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { text: c })))),
    h("tbody", {}, rows.map((r) => h("tr", { class: r.class }, r.cells.map((c) => (c instanceof Node ? h("td", {}, c) : h("td", { text: c })))))),
  );
}

function detail(rec, previous) {
  const names = destinations(rec);
  const slo = app.setup?.slo;
  const obs = rec.observation;
  const sig = (s, f) => (s?.value == null ? (s?.unknown ?? "unknown").replaceAll("_", " ") : f(s.value));
  const obsRows = [
    {
      cells: [
        "primary",
        "—",
        `CPU ${sig(obs.primary.cpu, (v) => fmtPct(v))}`,
        sig(obs.primary.read_qps, (v) => v.toFixed(0)),
        sig(obs.primary.read_p99_ms, (v) => `${v.toFixed(1)} ms`),
      ],
    },
    ...obs.replicas.map((r) => ({
      class: replicaState(r, slo).level,
      cells: [
        r.name,
        r.up == null ? "unknown" : r.up ? "up" : "down",
        `lag ${sig(r.lag_s, fmtSecs)}`,
        sig(r.read_qps, (v) => v.toFixed(0)),
        sig(r.read_p99_ms, (v) => `${v.toFixed(1)} ms`),
      ],
    })),
  ];
  const parts = [h("h4", { text: "Observed" }), table(["", "up", "lag / CPU", "reads/s", "p99"], obsRows, "obs")];

  parts.push(h("h4", { text: `Policy (${rec.explanation.policy || rec.policy})` }));
  if (rec.explanation.state) parts.push(h("p", { class: "mono", text: `state: ${rec.explanation.state}` }));
  const actions = rec.explanation.actions ?? [];
  if (actions.length) {
    const allowed = actions.filter((a) => a.allowed);
    const values = allowed.map((a) => a.value);
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const proposed = weightList(rec.decision.proposal.weights).join("/");
    let marked = false;
    const rows = [...actions]
      .sort((a, b) => (b.allowed - a.allowed) || (b.value - a.value))
      .map((a) => {
        const chosen = !marked && a.allowed && weightList(a.weights).join("/") === proposed;
        if (chosen) marked = true;
        const frac = a.allowed && hi > lo ? (a.value - lo) / (hi - lo) : a.allowed ? 1 : 0;
        return {
          class: `${a.allowed ? "" : "masked"}${chosen ? " chosen" : ""}`,
          cells: [
            a.label + (chosen ? "  ← proposed" : ""),
            fmtWeights(a.weights),
            h("span", { class: "value" }, h("span", { class: "track" }, h("span", { class: "vbar", style: `width:${(100 * frac).toFixed(0)}%` })), a.allowed ? a.value.toFixed(3) : "—"),
            a.allowed ? "allowed" : "masked by the shield",
          ],
        };
      });
    parts.push(table(["action", "weights", "value", ""], rows, "actions"));
  } else {
    parts.push(h("p", { class: "hint", text: "This policy is a rule: it has no action values." }));
  }
  parts.push(h("p", {}, h("b", { text: "Proposal: " }), `${fmtWeights(rec.decision.proposal.weights)} — ${rec.decision.proposal.reason}`));

  parts.push(h("h4", { text: "Shield" }));
  const ivs = rec.decision.interventions ?? [];
  if (ivs.length === 0) parts.push(h("p", { text: "Let the proposal through unchanged." }));
  else {
    parts.push(h("ul", {}, ivs.map((iv) => h("li", {}, h("b", { text: iv.rule.replaceAll("_", " ") }), `: ${iv.detail}`))));
    if (shieldChanged(rec)) {
      parts.push(h("p", { text: `Changed ${fmtWeights(rec.decision.proposal.weights)} → ${fmtWeights(rec.decision.weights)}.` }));
    }
  }

  parts.push(h("h4", { text: "Result" }));
  const act = rec.actuation;
  const actText = act.status === "applied" ? "applied" : act.status === "failed" ? `FAILED (${act.error.kind}): ${act.error.message}` : `not applied: ${act.reason}`;
  const lines = [
    `Decision ${fmtWeights(rec.decision.weights)}${previous ? ` (${describeChange(previous.decision.weights, rec.decision.weights, names) || "no change"})` : ""}: ${actText}; in force ${fmtWeights(rec.in_force)}.`,
  ];
  if (rec.expected) {
    lines.push(`Expected of this decision: ${fmtPct(rec.expected.stale_fraction, 1)} of reads stale, ${fmtPct(rec.expected.failed_fraction, 1)} failed.`);
  }
  if (rec.outcome) {
    lines.push(`Previous interval: ${fmtPct(rec.outcome.stale_fraction, 1)} stale, ${fmtPct(rec.outcome.failed_fraction, 1)} failed, primary CPU ${fmtPct(rec.outcome.primary_cpu)}, reward ${rec.reward?.toFixed(3) ?? "—"}.`);
  }
  if (rec.source_error) lines.push(`Observation failed (${rec.source_error.kind}): ${rec.source_error.message}`);
  parts.push(...lines.map((l) => h("p", { text: l })));
  return h("div", { class: "detail" }, parts);
}

// ---------------------------------------------------------------- status, signals

function renderStatus(latest) {
  const st = app.state;
  const rows = [];
  const add = (k, v, cls) => rows.push(h("dt", { text: k }), h("dd", { text: v, class: cls }));
  if (latest) {
    add("mode", latest.mode.replace("_", "-"));
    add("policy", latest.policy);
    add("paused", latest.shield.paused ? "yes — weights held by an operator" : "no", latest.shield.paused ? "warn" : "");
    const ov = latest.shield.override_;
    add("override", ov ? `${fmtWeights(ov.weights)} until ${fmtT(ov.until_s)}` : "none", ov ? "warn" : "");
    add("fail-safe", latest.shield.fail_safe_engaged ? "ENGAGED" : "not engaged", latest.shield.fail_safe_engaged ? "bad" : "");
    add("in force", fmtWeights(latest.in_force));
    add("last decision", `#${latest.seq} at ${fmtT(latest.at_s)}${app.lastReceived ? `, received ${fmtSecs((Date.now() - app.lastReceived) / 1000)} ago` : ""}`);
    add("hard-limit violations", String(latest.shield.hard_limit_violations), latest.shield.hard_limit_violations ? "bad" : "");
  }
  const err = st?.last_error;
  add("last error", err ? `${err.origin} at ${fmtT(err.at_s)}: ${err.kind} — ${err.message}` : "none", err ? "bad" : "");
  if (app.setup) {
    const s = app.setup.slo;
    add("staleness SLO", `${fmtSecs(s.max_staleness_s)} (hard limit ${fmtSecs(s.hard_staleness_s)})`);
    add("primary CPU", `target ${fmtPct(s.primary_cpu_target)}, cap ${fmtPct(s.primary_cpu_max)}`);
    add("interval", `a decision every ${fmtSecs(app.setup.interval_s)}`);
  }
  $("status").replaceChildren(...rows);
}

function renderSignals(latest) {
  const rows = signals(latest.observation, app.setup?.stale_after_s);
  $("signals").replaceChildren(
    h("thead", {}, h("tr", {}, ["", "signal", "value", "age"].map((c) => h("th", { text: c })))),
    h("tbody", {}, rows.map((r) => h("tr", { class: r.state }, h("td", { text: r.who }), h("td", { text: r.what }), h("td", { text: r.value }), h("td", { text: r.age })))),
  );
}

// ---------------------------------------------------------------- controls

function renderControls(latest) {
  const enabled = Boolean(app.state?.controls_enabled);
  const usable = enabled && app.token !== "";
  document.body.dataset.controls = usable ? "enabled" : enabled ? "need-token" : "read-only";
  $("controls-note").textContent = !app.state
    ? ""
    : !enabled
      ? "Read-only: this Weir was started without an operator token (--api-token, or api_token in the config), so it accepts no commands."
      : usable
        ? "Commands are queued and take effect at the next decision."
        : "Enter the operator token to enable the controls. It is kept in this tab only.";
  $("token-form").hidden = !enabled;
  for (const el of document.querySelectorAll("#controls .control")) el.disabled = !usable;
  if (usable && latest) {
    $("pause").disabled = latest.shield.paused;
    $("resume").disabled = !latest.shield.paused;
    $("override-clear").disabled = !latest.shield.override_;
  }
  const names = latest ? destinations(latest) : [];
  const box = $("override-weights");
  if (box.dataset.shape !== names.join("|")) {
    box.dataset.shape = names.join("|");
    const w = latest ? weightList(latest.decision.weights) : [];
    box.replaceChildren(...names.map((n, i) => h("label", {}, n, h("input", { type: "number", min: 0, max: 100, step: 1, value: w[i] ?? 0, class: "control", "data-index": String(i) }))));
    for (const el of box.querySelectorAll("input")) el.disabled = !usable;
  }
  const select = $("mode-select");
  const modes = [...new Set([app.setup?.mode ?? "enforce", "shadow"])];
  if (select.dataset.modes !== modes.join("|")) {
    select.dataset.modes = modes.join("|");
    select.replaceChildren(...modes.map((m) => h("option", { value: m, text: m.replace("_", "-") })));
  }
}

function result(text, ok) {
  const el = $("controls-result");
  el.textContent = text;
  el.className = `result ${ok ? "ok" : "bad"}`;
}

async function command(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${app.token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  let msg = "";
  try {
    const j = await resp.json();
    msg = j.error ?? (j.accepted ? `${j.accepted} queued — it takes effect at the next decision` : "");
  } catch {
    msg = `HTTP ${resp.status}`;
  }
  if (resp.status === 401) {
    app.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    result("The server refused the token; enter the right one.", false);
    renderControls(app.records[app.records.length - 1]);
  } else {
    result(msg || `HTTP ${resp.status}`, resp.ok);
  }
  refreshState();
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  app.token = $("token").value.trim();
  $("token").value = "";
  if (app.token) sessionStorage.setItem(TOKEN_KEY, app.token);
  result(app.token ? "Token set for this tab." : "", true);
  schedule();
});
$("token-forget").addEventListener("click", () => {
  app.token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  result("Token forgotten.", true);
  schedule();
});
$("pause").addEventListener("click", () => command("POST", "/api/pause"));
$("resume").addEventListener("click", () => command("POST", "/api/resume"));
$("override-clear").addEventListener("click", () => command("DELETE", "/api/override"));
$("override-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const vals = [...$("override-weights").querySelectorAll("input")].map((i) => Number(i.value));
  const total = vals.reduce((a, b) => a + b, 0);
  if (vals.some((v) => !Number.isInteger(v) || v < 0 || v > 100) || total !== 100) {
    result(`Weights must be whole numbers 0–100 that sum to 100 (now ${total}).`, false);
    return;
  }
  const duration = Number($("override-duration").value);
  if (!(duration > 0)) {
    result("The override needs a positive duration in seconds.", false);
    return;
  }
  command("POST", "/api/override", { weights: { primary: vals[0], replicas: vals.slice(1) }, duration_s: duration });
});
$("mode-form").addEventListener("submit", (e) => {
  e.preventDefault();
  command("POST", "/api/mode", { mode: $("mode-select").value });
});

// Keep "received N s ago" honest while nothing arrives.
setInterval(() => {
  const latest = app.records[app.records.length - 1];
  renderStatus(latest);
}, 2000);

backfill().then(connect);
