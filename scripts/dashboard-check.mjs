// Open the citytwin dashboard in headless Chromium (playwright-core), wait until the map is
// drawn, screenshot the map and optionally approve a task from the side panel.
//
// Usage: node scripts/dashboard-check.mjs URL OUT.png [--approve TASK_ID --token TOKEN
//            --reason TEXT] [--chromium /usr/bin/chromium] [--timeout-ms 60000]
//            [--width 1280] [--height 800]
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

// The machine's network is closed: without these Chromium keeps dialling Google services.
// SwiftShader gives WebGL without a GPU.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--use-gl=swiftshader",
  "--enable-unsafe-swiftshader",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

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
    "--reason": "reason", "--timeout-ms": "timeoutMs", "--width": "width", "--height": "height" };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] in names) opts[names[argv[i]]] = argv[++i];
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

async function run(page, opts, errors) {
  const started = Date.now();
  await page.goto(opts.url, { waitUntil: "load", timeout: opts.timeoutMs });
  await page.waitForFunction(
    () => window.__dashboard?.ready === true || window.__dashboard?.errors.length > 0,
    null,
    { timeout: opts.timeoutMs, polling: 200 },
  );
  const ready = Date.now() - started;
  const dashboard = await page.evaluate(() => window.__dashboard);
  await page.locator("#map").screenshot({
    path: opts.png,
    mask: [page.locator("#legend"), page.locator(".maplibregl-control-container")],
    maskColor: "#000000",
  });
  let approval = null;
  if (opts.approve) approval = await approve(page, opts);
  const panel = await page.locator("#panel").innerText();
  return { dashboard, approval, panel, timingsMs: { ready, total: Date.now() - started } };
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
