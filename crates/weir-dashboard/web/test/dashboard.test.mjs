// The dashboard in a real browser: Debian's Chromium driven by playwright-core, against
// `weir demo` on its embedded scenario (replica-1 stalls for five minutes, then recovers).
//
//   WEIR_BIN=target/debug/weir node --test --test-reporter=spec crates/weir-dashboard/web/test/
//
// WEIR_BIN is the weir binary (default: target/debug/weir under the repository root),
// CHROMIUM the browser (default /usr/bin/chromium), WEIR_DASHBOARD_OUT where screenshots and
// weir's logs go (default target/weir-dashboard-test). Everything listens on 127.0.0.1.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, createWriteStream } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../../..");
const weirBin = process.env.WEIR_BIN || path.join(root, "target/debug/weir");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const out = path.resolve(process.env.WEIR_DASHBOARD_OUT || path.join(root, "target/weir-dashboard-test"));
const TOKEN = "dashboard-test-token";

mkdirSync(out, { recursive: true });

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts `weir demo` on `port`; resolves once it answers /healthz. */
async function startDemo(port, extra, logName) {
  const args = ["demo", "--listen", `127.0.0.1:${port}`, "--linger", ...extra];
  const child = spawn(weirBin, args, { cwd: root, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  const log = createWriteStream(path.join(out, logName));
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  let exited = null;
  child.on("exit", (code, sig) => {
    exited = `exited (${code ?? sig})`;
  });
  for (let i = 0; i < 300; i++) {
    if (exited) throw new Error(`weir demo ${exited}; see ${path.join(out, logName)}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (r.ok) return child;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`weir demo did not answer on port ${port} within 30 s; see ${path.join(out, logName)}`);
}

async function stop(child) {
  if (!child || child.exitCode != null || child.signalCode != null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await gone;
}

/** Log entries as shown: seq, weights, flags, change text; newest first. */
function logEntries(page) {
  return page.$$eval("#log .entry", (els) =>
    els.map((e) => ({
      seq: Number(e.dataset.seq),
      weights: e.dataset.weights.split("/").map(Number),
      flags: e.dataset.flags,
      change: e.querySelector(".change").textContent,
      text: e.querySelector("summary").textContent,
    })),
  );
}

describe("dashboard in headless Chromium against weir demo", () => {
  let browser;
  let page;
  let port;
  let demo;
  const consoleErrors = [];

  before(async () => {
    port = await freePort();
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    // Read-only Weir: no operator token. 100 decisions at 15 simulated seconds, 100x.
    demo = await startDemo(port, ["--speed", "100"], "weir-demo-readonly.log");
    const context = await browser.newContext({ viewport: { width: 1440, height: 1500 } });
    page = await context.newPage();
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    await page.goto(`http://127.0.0.1:${port}/`);
  });

  after(async () => {
    await stop(demo);
    await browser?.close();
  });

  it("charts receive live data", async () => {
    await page.waitForFunction(() => {
      const figs = [...document.querySelectorAll("figure.chart")];
      return figs.length === 6 && figs.every((f) => Number(f.dataset.points) >= 20 && f.querySelector("canvas"));
    }, null, { timeout: 60000 });
    assert.equal(await page.getAttribute("body", "data-conn"), "live");
    // Three destinations in the weights chart's legend, the SLO in the lag chart's.
    const legends = await page.$$eval("#chart-weights .u-legend .u-series .u-label", (ls) => ls.map((l) => l.textContent));
    assert.deepEqual(legends.slice(1), ["primary", "replica-1", "replica-2"]);
    const lagLegend = await page.$$eval("#chart-lag .u-legend .u-label", (ls) => ls.map((l) => l.textContent));
    assert.ok(lagLegend.includes("SLO"), `lag legend: ${lagLegend}`);
  });

  it("the decision log shows the shift away from the stalled replica and back", async () => {
    // The run is 100 decisions; wait for the end so the recovery is in.
    await page.waitForFunction(() => document.querySelectorAll("#log .entry").length >= 100, null, { timeout: 90000 });
    const entries = (await logEntries(page)).reverse(); // oldest first
    assert.equal(entries.length, 100);
    assert.deepEqual(entries.map((e) => e.seq), [...Array(100).keys()], "every decision once, in order");
    const away = entries.find((e) => e.weights[1] === 0 && e.seq > 0);
    assert.ok(away, "some decision sends replica-1 nothing");
    assert.match(away.change, /replica-1 \d+→0/, `the change names replica-1: ${away.text}`);
    const back = entries.find((e) => e.seq > away.seq && e.weights[1] > 0);
    assert.ok(back, `replica-1 gets reads again after decision ${away.seq}`);
    assert.match(back.change, /replica-1 0→\d+/, back.text);
    // Healthy before the stall: replica-1 had reads.
    assert.ok(entries.slice(1, away.seq).every((e) => e.weights[1] > 0));

    // The decision that moved reads away explains itself when opened.
    const entry = page.locator(`#log .entry[data-seq="${away.seq}"]`);
    await entry.locator("summary").click();
    const detail = entry.locator(".detail");
    await detail.waitFor();
    const text = await detail.textContent();
    assert.match(text, /Observed/);
    assert.match(text, /replica-1.*lag/s);
    assert.match(text, /Proposal: P\d+\/0\/\d+/);
    assert.match(text, /Shield/);
    // The Q-learning policy lists the value of each action; the proposed one is marked.
    assert.ok((await detail.locator("table.actions tr.chosen").count()) === 1, "one proposed action");
  });

  it("the headline and cards say which replica is lagging", async () => {
    // The final state: all replicas healthy again.
    const headline = await page.textContent("#headline");
    assert.match(headline, /Reads now: primary \d+% · replica-1 \d+% · replica-2 \d+%/);
    assert.equal(await page.locator(".card").count(), 3);
    // Mid-stall, from the history: the headline helper names replica-1 as over the SLO.
    const stalled = await page.evaluate(async () => {
      const view = await import("/assets/view.js");
      const state = await (await fetch("/api/state")).json();
      const history = await (await fetch("/api/history")).json();
      const rec = history.find((r) => (r.observation.replicas[0].lag_s.value ?? 0) > 60);
      return view.headline(rec, state.setup, null);
    });
    assert.deepEqual(stalled.troubled, ["replica-1"]);
    assert.match(stalled.text, /replica-1 is .* behind — over the hard limit .*: Weir sends it 0% of reads/);
  });

  it("controls are disabled without a token", async () => {
    assert.equal(await page.getAttribute("body", "data-controls"), "read-only");
    assert.equal(await page.isHidden("#token-form"), true);
    for (const id of ["#pause", "#resume", "#override-apply", "#override-clear", "#mode-apply"]) {
      assert.equal(await page.isDisabled(id), true, `${id} disabled`);
    }
    assert.match(await page.textContent("#controls-note"), /Read-only/);
    const shot = path.join(out, "dashboard.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
  });

  it("a page opened later backfills the whole run from /api/history", async () => {
    const late = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    await late.goto(`http://127.0.0.1:${port}/`);
    await late.waitForFunction(() => document.querySelectorAll("#log .entry").length === 100, null, { timeout: 20000 });
    await late.waitForFunction(() => Number(document.querySelector("#chart-lag").dataset.points) === 100, null, { timeout: 20000 });
    await late.close();
  });

  it("reconnects by itself when Weir restarts, and starts over with the new run", async () => {
    await stop(demo);
    await page.waitForFunction(() => document.body.dataset.conn !== "live", null, { timeout: 20000 });
    // A new Weir on the same address, this time with an operator token, running slowly
    // enough (a decision every 0.75 s) to pause it mid-run.
    demo = await startDemo(port, ["--speed", "20", "--api-token", TOKEN], "weir-demo-token.log");
    await page.waitForFunction(() => {
      const first = document.querySelector("#log .entry");
      return document.body.dataset.conn === "live" && first && Number(first.dataset.seq) < 90 && document.querySelectorAll("#log .entry").length < 90;
    }, null, { timeout: 30000 });
  });

  it("with a token configured, controls wait for the token, refuse a wrong one and pause works", async () => {
    await page.waitForFunction(() => document.body.dataset.controls === "need-token", null, { timeout: 10000 });
    assert.equal(await page.isDisabled("#pause"), true, "no token typed yet");

    await page.fill("#token", "wrong-token");
    await page.click("#token-use");
    await page.waitForFunction(() => !document.querySelector("#pause").disabled, null, { timeout: 5000 });
    await page.click("#pause");
    await page.waitForFunction(() => /refused the token/.test(document.querySelector("#controls-result").textContent), null, { timeout: 5000 });
    assert.equal(await page.getAttribute("body", "data-controls"), "need-token", "a refused token is dropped");

    await page.fill("#token", TOKEN);
    await page.click("#token-use");
    await page.waitForFunction(() => !document.querySelector("#pause").disabled, null, { timeout: 5000 });
    const before = Math.max(...(await logEntries(page)).map((e) => e.seq));
    await page.click("#pause");
    await page.waitForFunction(() => /pause queued/.test(document.querySelector("#controls-result").textContent), null, { timeout: 5000 });
    // The next decisions say so: flagged, and the shield's reason in the detail.
    await page.waitForFunction(
      (b) => [...document.querySelectorAll("#log .entry")].filter((e) => Number(e.dataset.seq) > b && e.dataset.flags.split(" ").includes("paused")).length >= 2,
      before,
      { timeout: 30000 },
    );
    const paused = (await logEntries(page)).filter((e) => e.seq > before && e.flags.includes("paused"));
    assert.ok(paused.length >= 2);
    assert.match(paused[0].text, /paused by operator/);
    const held = paused.map((e) => e.weights.join("/"));
    assert.ok(held.every((w) => w === held[0]), `weights held while paused: ${held}`);
    const pills = await page.textContent("#pills");
    assert.match(pills, /paused/);
    const entry = page.locator(`#log .entry[data-seq="${paused[0].seq}"]`);
    await entry.locator("summary").click();
    assert.match(await entry.locator(".detail").textContent(), /paused/);
    assert.equal(await page.isDisabled("#pause"), true, "pause is disabled while paused");

    const shot = path.join(out, "dashboard-paused.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);

    await page.click("#resume");
    const resumedFrom = Math.max(...(await logEntries(page)).map((e) => e.seq));
    await page.waitForFunction(
      (b) => [...document.querySelectorAll("#log .entry")].some((e) => Number(e.dataset.seq) > b && !e.dataset.flags.split(" ").includes("paused")),
      resumedFrom,
      { timeout: 30000 },
    );
  });

  it("the page logged no errors", () => {
    // EventSource reconnection attempts while Weir was down are expected network errors.
    const real = consoleErrors.filter((e) => !/ERR_CONNECTION_REFUSED|api\/events|Failed to load resource/.test(e));
    assert.deepEqual(real, []);
  });
});
