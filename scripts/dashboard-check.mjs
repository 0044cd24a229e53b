// Open the citytwin dashboard in headless Chromium (playwright-core), wait until the map is
// drawn, screenshot the map and optionally approve a task from the side panel.
//
// Usage: node scripts/dashboard-check.mjs URL OUT.png [--approve TASK_ID --token TOKEN
//            --reason TEXT] [--chromium /usr/bin/chromium] [--timeout-ms 60000]
//            [--width 1280] [--height 800] [--distribution mean|sd] [--replay HOUR_INDEX]
//            [--sensor THING] [--release LON,LAT] [--traffic] [--close LINK_ID] [--linkage]
//            [--full] [--lang ko|en]
//
// Steps, in this order, each with its own screenshot OUT-STEP.png next to OUT.png:
// --distribution shows the kriging layer (or its standard deviation); --replay moves the time
// slider to an hour; --sensor clicks that sensor on the map and waits for its chart; --release
// arms the scenario runner and clicks the point; --traffic turns the peak-hour flows on;
// --close clicks that street in the road-closure scenario and waits for its changes;
// --linkage opens the linkage table page and lists its services. --full: screenshots of the whole page, unmasked (for the docs); --lang:
// the page's label language (default: the page's own, Korean).
//
// URL is the page (http://127.0.0.1:PORT/ui/, optionally with a #zoom/lat/lon/bearing/pitch
// view). Chromium gets no network beyond the page's own origin: any other request is aborted
// and counted as an error, as is every console error, page error, failed request and HTTP
// status ≥ 400. The screenshot shows the map only (legend and controls masked black). Prints
// one JSON report {ok, errors, dashboard, approval, png, timingsMs} and exits 0 when ok, 1 when
// not, 2 on bad usage.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM_ARGS } from "./offline-chromium.mjs";


function usage(message) {
  console.error(`dashboard-check: ${message}`);
  console.error(
    "usage: node scripts/dashboard-check.mjs URL OUT.png [--approve ID --token T --reason R]",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { chromium: "/usr/bin/chromium", timeoutMs: 60000, width: 1280, height: 800 };
  const names = { "--chromium": "chromium", "--approve": "approve", "--token": "token",
    "--reason": "reason", "--timeout-ms": "timeoutMs", "--width": "width", "--height": "height",
    "--distribution": "distribution", "--replay": "replay", "--sensor": "sensor",
    "--release": "release", "--lang": "lang", "--close": "close" };
  const flags = { "--linkage": "linkage", "--full": "full", "--traffic": "traffic" };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] in names) opts[names[argv[i]]] = argv[++i];
    else if (argv[i] in flags) opts[flags[argv[i]]] = true;
    else if (argv[i].startsWith("--")) usage(`unknown option ${argv[i]}`);
    else positional.push(argv[i]);
  }
  if (positional.length !== 2) usage("need URL and OUT.png");
  for (const key of ["timeoutMs", "width", "height"]) {
    opts[key] = Number(opts[key]);
    if (!Number.isFinite(opts[key]) || opts[key] <= 0) usage(`bad --${key}`);
  }
  if (opts.approve && !(opts.token && opts.reason)) usage("--approve needs --token and --reason");
  return { ...opts, url: positional[0], png: resolve(positional[1]) };
}

function watch(context, page, origin, errors) {
  const local = (url) =>
    url.startsWith(origin + "/") || url.startsWith("data:") || url.startsWith("blob:");
  context.route("**/*", (route) => {
    const url = route.request().url();
    if (local(url)) return route.continue();
    errors.push(`blocked non-local request: ${url}`);
    return route.abort("blockedbyclient");
  });
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
  });
  page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
  page.on("requestfailed", (req) => {
    const failure = req.failure()?.errorText ?? "";
    if (failure !== "net::ERR_BLOCKED_BY_CLIENT") errors.push(`requestfailed: ${req.url()} ${failure}`);
  });
  page.on("response", (res) => {
    if (res.status() >= 400) errors.push(`http ${res.status()}: ${res.url()}`);
  });
}

// Enter the token once, then Approve: the reason goes into the prompt the page opens.
async function approve(page, { approve: taskId, token, reason, timeoutMs }) {
  await page.fill("#token-form input", token);
  await page.click("#token-form button[type=submit]");
  page.once("dialog", (dialog) => dialog.accept(reason));
  const card = page.locator(`.task[data-task-id="${taskId}"]`);
  await card.locator("button.approve").click({ timeout: timeoutMs });
  await card.waitFor({ state: "detached", timeout: timeoutMs }); // the queue is refreshed
  return { taskId, tokenKept: await page.evaluate(() => sessionStorage.getItem("citytwin.token")) };
}

const dashboard = (page) => page.evaluate(() => window.__dashboard);

async function until(page, predicate, arg, timeoutMs) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: timeoutMs, polling: 200 });
  } catch (error) {
    throw new Error(`waiting for ${predicate.toString().slice(6, 70)}: ${error.message}`);
  }
}

async function screenshot(page, opts, step) {
  const path = step ? opts.png.replace(/\.png$/, `-${step}.png`) : opts.png;
  if (opts.full) await page.screenshot({ path });
  else {
    const masked = ["#legend", "#timeline", ".maplibregl-control-container"];
    const mask = masked.map((selector) => page.locator(selector));
    await page.locator("#map").screenshot({ path, mask, maskColor: "#000000" });
  }
  return path;
}

// The screen position of a point on the map (the page keeps its map at window.__dashboardMap).
function pixelOf(page, lonLat) {
  return page.evaluate(([lon, lat]) => {
    const { x, y } = window.__dashboardMap.project([lon, lat]);
    const box = document.querySelector("#map").getBoundingClientRect();
    return { x: box.left + x, y: box.top + y };
  }, lonLat);
}

async function showDistribution(page, opts) {
  await page.selectOption("#distribution", opts.distribution);
  const band = opts.distribution;
  await until(page, (b) => window.__dashboard.distribution?.band === b, band, opts.timeoutMs);
  const state = (await dashboard(page)).distribution;
  return { ...state, png: await screenshot(page, opts, "distribution") };
}

async function replay(page, opts) {
  const index = Number(opts.replay);
  await page.locator("#replay").fill(String(index));
  await until(page, (i) => window.__dashboard.replay?.index === i, index, opts.timeoutMs);
  return { ...(await dashboard(page)).replay, png: await screenshot(page, opts, "replay") };
}

async function openSensor(page, opts) {
  const where = await page.evaluate(async (thing) => {
    const response = await fetch("../twin/sensors");
    const found = (await response.json()).features.find((f) => f.properties.thing === thing);
    return found?.geometry?.coordinates ?? null;
  }, opts.sensor);
  if (!where) throw new Error(`--sensor ${opts.sensor}: no located sensor with that key`);
  const { x, y } = await pixelOf(page, where);
  await page.mouse.click(x, y);
  await until(page, () => Number.isInteger(window.__dashboard.sensorDetail?.points), null,
    opts.timeoutMs);
  const chart = (await page.locator("#sensor-detail path.chart-line").getAttribute("d")) ?? "";
  return {
    ...(await dashboard(page)).sensorDetail,
    vertices: chart.split(/[ML]/).length - 1,
    text: await page.locator("#sensor-detail").innerText(),
    png: await screenshot(page, { ...opts, full: true }, "sensor"),
  };
}

async function runRelease(page, opts) {
  await page.click("#release");
  const { x, y } = await pixelOf(page, opts.release.split(",").map(Number));
  await page.mouse.click(x, y);
  await until(page, () => window.__dashboard.release?.zones !== undefined, null, opts.timeoutMs);
  await page.evaluate(() => new Promise((ok) => {
    window.__dashboardMap.once("idle", ok);
    window.__dashboardMap.triggerRepaint(); // an idle map fires "idle" only after a frame
  }));
  return {
    ...(await dashboard(page)).release,
    status: await page.locator("#release-status").innerText(),
    png: await screenshot(page, opts, "release"),
  };
}

async function showTrafficFlows(page, opts) {
  await page.selectOption("#traffic", "flows");
  await until(page, () => window.__dashboard.traffic?.links > 0, null, opts.timeoutMs);
  return { ...(await dashboard(page)).traffic, png: await screenshot(page, opts, "traffic") };
}

// Close the street LINK_ID: arm the scenario, click the middle of that link's line.
async function closeRoad(page, opts) {
  const where = await page.evaluate(async (id) => {
    const response = await fetch("../layers/traffic");
    const found = (await response.json()).features.find((f) => f.properties.link_id === id);
    const line = found?.geometry?.coordinates;
    if (!line) return null;
    const [a, b] = [line[0], line[line.length - 1]];
    return [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
  }, opts.close);
  if (!where) throw new Error(`--close ${opts.close}: no modelled link with that id`);
  await page.click("#closure");
  await until(page, () => window.__dashboard.traffic?.links > 0, null, opts.timeoutMs);
  const { x, y } = await pixelOf(page, where);
  await page.mouse.click(x, y);
  await until(page, () => window.__dashboard.closure?.closed !== undefined, null, opts.timeoutMs);
  await page.evaluate(() => new Promise((ok) => {
    window.__dashboardMap.once("idle", ok);
    window.__dashboardMap.triggerRepaint();
  }));
  return {
    ...(await dashboard(page)).closure,
    status: await page.locator("#closure-status").innerText(),
    png: await screenshot(page, opts, "closure"),
  };
}

async function openLinkage(page, opts) {
  await page.click('[data-view="linkage"]');
  await until(page, () => Number.isInteger(window.__dashboard.linkageRows), null, opts.timeoutMs);
  return {
    services: await page.$$eval("tr[data-service]", (rows) => rows.map((r) => r.dataset.service)),
    statuses: await page.$$eval("table.linkage td", (cells) => cells.map((c) => c.className)),
    hash: await page.evaluate(() => window.location.hash),
    png: await screenshot(page, { ...opts, full: true }, "linkage"),
  };
}

// The steps asked for, in a fixed order; each one's report.
async function steps(page, opts) {
  const done = {};
  if (opts.distribution) done.distribution = await showDistribution(page, opts);
  if (opts.replay !== undefined) done.replay = await replay(page, opts);
  if (opts.sensor) done.sensor = await openSensor(page, opts);
  if (opts.release) done.release = await runRelease(page, opts);
  if (opts.traffic) done.traffic = await showTrafficFlows(page, opts);
  if (opts.close) done.closure = await closeRoad(page, opts);
  if (opts.linkage) done.linkage = await openLinkage(page, opts);
  return done;
}

async function run(page, opts, errors) {
  const started = Date.now();
  await page.goto(opts.url, { waitUntil: "load", timeout: opts.timeoutMs });
  await page.waitForFunction(
    () => window.__dashboard?.ready === true || window.__dashboard?.errors.length > 0,
    null,
    { timeout: opts.timeoutMs, polling: 200 },
  );
  const ready = Date.now() - started;
  const state = await dashboard(page);
  await screenshot(page, opts, null);
  const done = state.ready ? await steps(page, opts) : {};
  let approval = null;
  if (opts.approve) approval = await approve(page, opts);
  const panel = await page.locator("#panel").innerText();
  const after = await dashboard(page); // errors raised during the steps
  return { dashboard: { ...state, errors: after.errors }, steps: done, approval, panel,
    timingsMs: { ready, total: Date.now() - started } };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const origin = new URL(opts.url).origin;
  const errors = [];
  const profile = await mkdtemp(join(tmpdir(), "dashboard-chromium-"));
  let context;
  let result = {};
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: opts.chromium,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: opts.width, height: opts.height },
      timeout: 30000,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    watch(context, page, origin, errors);
    if (opts.lang) {
      const setLanguage = (lang) => localStorage.setItem("citytwin.language", lang);
      await context.addInitScript(setLanguage, opts.lang);
    }
    result = await run(page, opts, errors);
  } catch (e) {
    errors.push(`driver: ${e.message.split("\n")[0]}`);
  } finally {
    if (context) await context.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
  }
  const allErrors = [...(result.dashboard?.errors ?? []), ...errors];
  const ok = allErrors.length === 0 && result.dashboard?.ready === true;
  console.log(JSON.stringify({ ok, errors: allErrors, ...result, png: opts.png }));
  process.exit(ok ? 0 : 1);
}

await main();
