// The dashboard's pure helpers (view.js), without a browser.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { columns, describeChange, fmtT, headline, recordFlags, replicaState, signals, stack } from "../view.js";

const slo = { max_staleness_s: 5, hard_staleness_s: 30, primary_cpu_target: 0.6, primary_cpu_max: 0.85, read_p99_slo_ms: 50 };
const sig = (value, age = 10) => (value == null ? { value: null, age_s: null, unknown: "no_series" } : { value, age_s: age });

/** A record shaped like weir-recorder's StepRecord. */
function record(seq, lags, weights, extra = {}) {
  return {
    seq,
    at_s: 15 * seq,
    observation: {
      at_s: 15 * seq,
      primary: { cpu: sig(0.5), read_qps: sig(800), write_qps: sig(300), read_p99_ms: sig(4) },
      replicas: lags.map((l, i) => ({ name: `replica-${i + 1}`, up: l === "down" ? false : true, lag_s: sig(l === "down" ? null : l), read_qps: sig(1500), read_p99_ms: sig(6) })),
    },
    decision: {
      at_s: 15 * seq,
      weights: { primary: weights[0], replicas: weights.slice(1) },
      proposal: { weights: { primary: weights[0], replicas: weights.slice(1) }, action: 0, reason: "greedy" },
      interventions: [],
    },
    explanation: { policy: "qlearn", state: "", actions: [] },
    outcome: null,
    expected: { stale_fraction: 0, failed_fraction: 0 },
    reward: -0.5,
    mode: "enforce",
    actuation: { status: "applied" },
    in_force: { primary: weights[0], replicas: weights.slice(1) },
    shield: { paused: false, override_: null, fail_safe_engaged: false, hard_limit_violations: 0 },
    policy: "qlearn",
    ...extra,
  };
}

describe("view helpers", () => {
  it("formats controller time", () => {
    assert.equal(fmtT(0), "0:00");
    assert.equal(fmtT(405), "6:45");
    assert.equal(fmtT(3725), "1:02:05");
    assert.equal(fmtT(null), "?");
  });

  it("describes a weight change biggest move first", () => {
    const names = ["primary", "replica-1", "replica-2"];
    assert.equal(
      describeChange({ primary: 20, replicas: [40, 40] }, { primary: 40, replicas: [0, 60] }, names),
      "replica-1 40→0, primary 20→40, replica-2 40→60",
    );
    assert.equal(describeChange({ primary: 20, replicas: [40, 40] }, { primary: 20, replicas: [40, 40] }, names), "");
  });

  it("grades replicas against the SLO, never treating unknown as fresh", () => {
    assert.equal(replicaState({ up: true, lag_s: sig(1) }, slo).level, "ok");
    assert.equal(replicaState({ up: true, lag_s: sig(6) }, slo).level, "warn");
    assert.equal(replicaState({ up: true, lag_s: sig(31) }, slo).level, "bad");
    assert.equal(replicaState({ up: true, lag_s: sig(null) }, slo).level, "unknown");
    assert.equal(replicaState({ up: false, lag_s: sig(0) }, slo).level, "down");
  });

  it("names the lagging replica and what Weir does about it", () => {
    const before = record(1, [0.2, 0.3], [20, 40, 40]);
    const now = record(2, [42, 0.3], [40, 0, 60]);
    const hl = headline(now, { slo }, before);
    assert.deepEqual(hl.troubled, ["replica-1"]);
    assert.match(hl.text, /replica-1 is 42 s behind — over the hard limit \(30 s\): Weir sends it 0% of reads \(was 40%\)/);
    assert.match(hl.text, /Reads now: primary 40% · replica-1 0% · replica-2 60%/);
    const calm = headline(before, { slo }, null);
    assert.deepEqual(calm.troubled, []);
    assert.match(calm.text, /All 2 replicas are within the staleness SLO/);
  });

  it("flags paused, failed and shielded decisions", () => {
    const rec = record(3, [0.1, 0.1], [20, 40, 40], {
      shield: { paused: true, override_: null, fail_safe_engaged: false, hard_limit_violations: 0 },
      actuation: { status: "failed", error: { kind: "conflict", message: "409" } },
    });
    rec.decision.interventions.push({ rule: "paused", detail: "paused: holding" }, { rule: "step_limit", detail: "max step 20" });
    const kinds = recordFlags(rec).map((f) => f.kind);
    assert.deepEqual(kinds, ["paused", "error", "shield"]);
  });

  it("keeps unknown values as gaps in chart columns and stacks weights", () => {
    const recs = [record(0, [1, 2], [20, 40, 40]), record(1, [null, 2], [40, 0, 60])];
    const c = columns(recs, { slo });
    assert.deepEqual(c.lag[0], [1, null]);
    assert.deepEqual(c.sloLag, [5, 5]);
    assert.deepEqual(c.cpu, [50, 50]);
    const layers = stack(c.weight);
    assert.deepEqual(layers, [[100, 100], [80, 60], [40, 60]]);
  });

  it("marks stale and unknown signals", () => {
    const rec = record(0, [1, null], [20, 40, 40]);
    rec.observation.primary.cpu = sig(0.5, 90);
    const rows = signals(rec.observation, 45);
    assert.equal(rows.find((r) => r.who === "primary" && r.what === "CPU").state, "stale");
    assert.equal(rows.find((r) => r.who === "replica-2" && r.what === "lag").state, "unknown");
    assert.equal(rows.find((r) => r.who === "replica-1" && r.what === "lag").state, "fresh");
  });
});
