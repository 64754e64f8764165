// Pure helpers for the dashboard: turn the recorder's records (see weir-recorder's
// StepRecord) into words, colours and chart columns. No DOM, no network: app.js does that,
// and test/view.test.mjs checks these with node's test runner.

export const PRIMARY_COLOR = "#7a4cc2";
const REPLICA_COLORS = ["#2b7bd6", "#12a38a", "#e08a00", "#c2459b", "#5a8f29", "#8c6d46", "#3f4ea8", "#b05a2a"];
export const SLO_COLOR = "#d23a3a";

/** Colour of destination `i` (0 = primary, then replicas in order). */
export function destColor(i) {
  return i === 0 ? PRIMARY_COLOR : REPLICA_COLORS[(i - 1) % REPLICA_COLORS.length];
}

/** Controller time in seconds as `m:ss` (or `h:mm:ss`). */
export function fmtT(s) {
  if (s == null || !Number.isFinite(s)) return "?";
  const neg = s < 0;
  let t = Math.round(Math.abs(s));
  const h = Math.floor(t / 3600);
  t -= h * 3600;
  const m = Math.floor(t / 60);
  const sec = String(t - m * 60).padStart(2, "0");
  const body = h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
  return (neg ? "-" : "") + body;
}

/** Seconds, compactly: `0.4 s`, `12 s`, `3.2 min`. */
export function fmtSecs(v) {
  if (v == null || !Number.isFinite(v)) return "unknown";
  if (v < 10) return `${v.toFixed(1)} s`;
  if (v < 120) return `${Math.round(v)} s`;
  return `${(v / 60).toFixed(1)} min`;
}

/** A 0..1 fraction as a percentage. */
export function fmtPct(v, digits = 0) {
  if (v == null || !Number.isFinite(v)) return "unknown";
  return `${(100 * v).toFixed(digits)}%`;
}

/** Destination names in weight order: primary, then the replicas. */
export function destinations(rec) {
  const names = ["primary"];
  const n = rec.decision.weights.replicas.length;
  for (let i = 0; i < n; i++) {
    names.push(rec.observation.replicas[i]?.name ?? `replica-${i + 1}`);
  }
  return names;
}

/** Weights as one list in destination order. */
export function weightList(w) {
  return [w.primary, ...w.replicas];
}

/** `P20/40/40`, the notation of Weir's console and logs. */
export function fmtWeights(w) {
  return `P${w.primary}/${w.replicas.join("/")}`;
}

/** What changed between two weight sets, biggest move first: `replica-1 40→0, primary 20→60`. */
export function describeChange(before, after, names) {
  if (!before) return "";
  const b = weightList(before);
  const a = weightList(after);
  if (b.length !== a.length) return `${fmtWeights(before)} → ${fmtWeights(after)}`;
  const moves = [];
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) moves.push({ name: names[i] ?? `#${i}`, from: b[i], to: a[i] });
  }
  moves.sort((x, y) => Math.abs(y.to - y.from) - Math.abs(x.to - x.from));
  return moves.map((m) => `${m.name} ${m.from}→${m.to}`).join(", ");
}

/**
 * How a replica stands against the SLO: `level` is one of ok, warn (over the staleness
 * SLO), bad (over the hard limit), down, unknown; `text` says it in words.
 */
export function replicaState(r, slo) {
  if (r.up === false) return { level: "down", text: "down" };
  const lag = r.lag_s?.value;
  if (lag == null) {
    const why = r.lag_s?.unknown ? ` (${r.lag_s.unknown.replaceAll("_", " ")})` : "";
    return { level: "unknown", text: `lag unknown${why}` };
  }
  if (slo && lag > slo.hard_staleness_s) {
    return { level: "bad", text: `${fmtSecs(lag)} behind — over the hard limit (${fmtSecs(slo.hard_staleness_s)})` };
  }
  if (slo && lag > slo.max_staleness_s) {
    return { level: "warn", text: `${fmtSecs(lag)} behind — over the SLO (${fmtSecs(slo.max_staleness_s)})` };
  }
  return { level: "ok", text: `${fmtSecs(lag)} behind` };
}

/** Shares (0..1) of a weight set, per destination. */
export function shares(w) {
  const list = weightList(w);
  const total = list.reduce((a, b) => a + b, 0);
  return list.map((x) => (total > 0 ? x / total : 0));
}

/**
 * The one-paragraph answer to "what is going on": which replicas are in trouble, what Weir
 * does about it, and why. `previous` is the record before `rec` (for "was").
 */
export function headline(rec, setup, previous) {
  const slo = setup?.slo;
  const names = destinations(rec);
  const now = shares(rec.decision.weights);
  const troubled = [];
  rec.observation.replicas.forEach((r, i) => {
    const st = replicaState(r, slo);
    if (st.level !== "ok") troubled.push({ name: r.name, index: i + 1, state: st });
  });
  const parts = [];
  if (rec.shield.fail_safe_engaged) {
    parts.push("Observations have been stale for too long: the configured fail-safe weights are in force.");
  }
  if (troubled.length === 0) {
    parts.push(`All ${rec.observation.replicas.length} replicas are within the staleness SLO${slo ? ` (${fmtSecs(slo.max_staleness_s)})` : ""}.`);
  } else {
    for (const t of troubled) {
      const was = previous ? shares(previous.decision.weights)[t.index] : null;
      const wasText = was != null && Math.round(100 * was) !== Math.round(100 * now[t.index]) ? ` (was ${fmtPct(was)})` : "";
      parts.push(`${t.name} is ${t.state.text}: Weir sends it ${fmtPct(now[t.index])} of reads${wasText}.`);
    }
  }
  parts.push(`Reads now: ${names.map((n, i) => `${n} ${fmtPct(now[i])}`).join(" · ")}.`);
  const why = [];
  if (rec.decision.proposal?.reason) why.push(`policy ${rec.policy}: ${rec.decision.proposal.reason}`);
  for (const iv of rec.decision.interventions ?? []) why.push(`shield (${iv.rule.replaceAll("_", " ")}): ${iv.detail}`);
  return { troubled: troubled.map((t) => t.name), text: parts.join(" "), why };
}

/** Badges for a log row: what was special about this decision. */
export function recordFlags(rec) {
  const flags = [];
  if (rec.shield.paused) flags.push({ kind: "paused", text: "paused by operator" });
  if (rec.shield.override_) flags.push({ kind: "override", text: `override until ${fmtT(rec.shield.override_.until_s)}` });
  if (rec.shield.fail_safe_engaged) flags.push({ kind: "failsafe", text: "fail-safe" });
  if (rec.mode !== "enforce") flags.push({ kind: "mode", text: rec.mode.replace("_", "-") });
  if (rec.actuation.status === "failed") flags.push({ kind: "error", text: `actuation failed: ${rec.actuation.error.kind}` });
  if (rec.source_error) flags.push({ kind: "error", text: `observation failed: ${rec.source_error.kind}` });
  for (const iv of rec.decision.interventions ?? []) {
    if (iv.rule !== "paused" && iv.rule !== "manual_override" && iv.rule !== "fail_safe") {
      flags.push({ kind: "shield", text: `shield: ${iv.rule.replaceAll("_", " ")}` });
    }
  }
  return flags;
}

/** Whether the decision's weights differ from the proposal's. */
export function shieldChanged(rec) {
  const a = weightList(rec.decision.weights);
  const p = weightList(rec.decision.proposal.weights);
  return a.length !== p.length || a.some((v, i) => v !== p[i]);
}

/**
 * Chart columns from records (oldest first). Unknown values are `null` (a gap), never 0.
 * Replica columns follow the latest record's replica count.
 */
export function columns(records, setup) {
  const n = records.length ? records[records.length - 1].decision.weights.replicas.length : 0;
  const col = () => new Array(records.length).fill(null);
  const c = {
    x: records.map((r) => r.at_s),
    lag: Array.from({ length: n }, col),
    weight: Array.from({ length: n + 1 }, col),
    reward: col(),
    cpu: col(),
    p99Primary: col(),
    p99: Array.from({ length: n }, col),
    expectedStale: col(),
    expectedFailed: col(),
  };
  records.forEach((r, k) => {
    for (let i = 0; i < n; i++) {
      const rep = r.observation.replicas[i];
      c.lag[i][k] = rep?.lag_s?.value ?? null;
      c.p99[i][k] = rep?.read_p99_ms?.value ?? null;
    }
    const w = weightList(r.decision.weights);
    for (let i = 0; i <= n; i++) c.weight[i][k] = w[i] ?? null;
    c.reward[k] = r.reward ?? null;
    const cpu = r.observation.primary.cpu.value;
    c.cpu[k] = cpu == null ? null : 100 * cpu;
    c.p99Primary[k] = r.observation.primary.read_p99_ms.value ?? null;
    if (r.expected) {
      c.expectedStale[k] = 100 * r.expected.stale_fraction;
      c.expectedFailed[k] = 100 * r.expected.failed_fraction;
    }
  });
  const slo = setup?.slo;
  c.sloLag = c.x.map(() => slo?.max_staleness_s ?? null);
  c.cpuCap = c.x.map(() => (slo ? 100 * slo.primary_cpu_max : null));
  c.p99Slo = c.x.map(() => slo?.read_p99_slo_ms ?? null);
  return c;
}

/**
 * Stacked weights for drawing: layer i is the sum of destinations i..n, so that drawing the
 * layers in order, each filled to zero, leaves every destination its own band.
 */
export function stack(weightColumns) {
  const n = weightColumns.length;
  const len = n ? weightColumns[0].length : 0;
  const layers = [];
  for (let i = 0; i < n; i++) {
    const layer = new Array(len);
    for (let k = 0; k < len; k++) {
      let sum = 0;
      let known = false;
      for (let j = i; j < n; j++) {
        const v = weightColumns[j][k];
        if (v != null) {
          sum += v;
          known = true;
        }
      }
      layer[k] = known ? sum : null;
    }
    layers.push(layer);
  }
  return layers;
}

/** Every signal of an observation with its age, for the freshness table. */
export function signals(obs, staleAfter) {
  const rows = [];
  const add = (who, what, sig, fmt) => {
    const age = sig?.age_s;
    let state = "fresh";
    if (sig?.value == null) state = "unknown";
    else if (staleAfter != null && age != null && age > staleAfter) state = "stale";
    rows.push({
      who,
      what,
      value: sig?.value == null ? (sig?.unknown ?? "unknown").replaceAll("_", " ") : fmt(sig.value),
      age: age == null ? "—" : fmtSecs(age),
      state,
    });
  };
  const num = (d) => (v) => v.toFixed(d);
  add("primary", "CPU", obs.primary.cpu, (v) => fmtPct(v));
  add("primary", "reads/s", obs.primary.read_qps, num(0));
  add("primary", "writes/s", obs.primary.write_qps, num(0));
  add("primary", "read p99 (ms)", obs.primary.read_p99_ms, num(1));
  for (const r of obs.replicas) {
    add(r.name, "lag", r.lag_s, fmtSecs);
    add(r.name, "reads/s", r.read_qps, num(0));
    add(r.name, "read p99 (ms)", r.read_p99_ms, num(1));
  }
  return rows;
}
