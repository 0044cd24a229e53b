// Render a 3D Tiles tileset with CesiumJS (npm `cesium`) in headless Chromium and save a PNG.
//
// Usage: node scripts/render-tiles.mjs TILESET(.json or its folder) OUT.png
//            [--chromium /usr/bin/chromium] [--timeout-ms 120000] [--width 1280] [--height 800]
//
// A tiny HTTP server on 127.0.0.1 serves the page, node_modules/cesium/Build/Cesium and the
// tileset folder; Chromium (driven by playwright-core) gets no network beyond loopback: every
// other request is aborted and counted as an error. The viewer uses no Cesium ion, Bing imagery
// or terrain. Prints one JSON report
//   {ok, errors, tilesLoaded, stats, webgl, timingsMs, png}
// and exits 0 when ok (tiles loaded, something rendered, no console/page/request errors), 1 when
// not, 2 on bad usage.
import { createServer } from "node:http";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { CHROMIUM_ARGS } from "./offline-chromium.mjs";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CESIUM_DIR = join(REPO, "node_modules", "cesium", "Build", "Cesium");
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".glb": "model/gltf-binary",
  ".gltf": "model/gltf+json",
  ".b3dm": "application/octet-stream",
  ".bin": "application/octet-stream",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".svg": "image/svg+xml",
  ".wasm": "application/wasm",
  ".ktx2": "image/ktx2",
  ".xml": "application/xml",
};

function usage(message) {
  console.error(`render-tiles: ${message}`);
  console.error(
    "usage: node scripts/render-tiles.mjs TILESET OUT.png [--chromium PATH] [--timeout-ms N] [--width N] [--height N]",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { chromium: "/usr/bin/chromium", timeoutMs: 120000, width: 1280, height: 800 };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--chromium") opts.chromium = argv[++i];
    else if (a === "--timeout-ms") opts.timeoutMs = Number(argv[++i]);
    else if (a === "--width") opts.width = Number(argv[++i]);
    else if (a === "--height") opts.height = Number(argv[++i]);
    else if (a.startsWith("--")) usage(`unknown option ${a}`);
    else positional.push(a);
  }
  if (positional.length !== 2) usage("need TILESET and OUT.png");
  for (const k of ["timeoutMs", "width", "height"]) {
    if (!Number.isFinite(opts[k]) || opts[k] <= 0) usage(`bad --${k}`);
  }
  return { ...opts, tileset: resolve(positional[0]), png: resolve(positional[1]) };
}

// The page: a Cesium Viewer with no imagery, no terrain provider, no ion-backed widgets.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>citytwin 3D Tiles</title>
<script>window.CESIUM_BASE_URL = "/cesium/";</script>
<script src="/cesium/Cesium.js"></script>
<link rel="stylesheet" href="/cesium/Widgets/widgets.css">
<style>html,body,#viewer{margin:0;padding:0;width:100%;height:100%;overflow:hidden}</style>
</head><body><div id="viewer"></div>
<script>
(async () => {
  const report = { errors: [], tilesLoaded: false, stats: {}, webgl: {} };
  window.__report = report;
  try {
    const t0 = performance.now();
    const viewer = new Cesium.Viewer("viewer", {
      baseLayer: false,
      baseLayerPicker: false,
      geocoder: false,
      homeButton: false,
      sceneModePicker: false,
      navigationHelpButton: false,
      animation: false,
      timeline: false,
      fullscreenButton: false,
      infoBox: false,
      selectionIndicator: false,
      shouldAnimate: false,
      requestRenderMode: false,
    });
    const scene = viewer.scene;
    scene.renderError.addEventListener((_scene, e) => report.errors.push("renderError: " + e));
    // Fixed local noon (KST) so the sun lights the facades the same way on every run.
    viewer.clock.currentTime = Cesium.JulianDate.fromIso8601("2024-06-21T03:00:00Z");
    scene.globe.baseColor = Cesium.Color.fromCssColorString("#8e9aa4");
    scene.globe.depthTestAgainstTerrain = false;
    scene.skyAtmosphere.show = true;
    const gl = scene.context._gl;
    report.webgl = {
      webgl2: scene.context.webgl2,
      renderer: gl.getParameter(gl.RENDERER),
      version: gl.getParameter(gl.VERSION),
    };

    const tileset = await Cesium.Cesium3DTileset.fromUrl(TILESET_URL, {
      maximumScreenSpaceError: 4,
    });
    tileset.tileFailed.addEventListener((e) =>
      report.errors.push("tileFailed: " + e.url + ": " + e.message));
    tileset.style = new Cesium.Cesium3DTileStyle({
      color: {
        conditions: [
          ["\${height} >= 60", "color('#c0392b')"],
          ["\${height} >= 30", "color('#e67e22')"],
          ["\${height} >= 15", "color('#f1c40f')"],
          ["true", "color('#fbfbf8')"],
        ],
      },
    });
    scene.primitives.add(tileset);
    const sphere = tileset.boundingSphere;
    await viewer.zoomTo(tileset,
      new Cesium.HeadingPitchRange(Cesium.Math.toRadians(20), Cesium.Math.toRadians(-40),
                                   sphere.radius * 2.2));
    report.timingsMs = { ready: Math.round(performance.now() - t0) };

    const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
    // tilesLoaded is true once every tile the camera needs is loaded and nothing is pending.
    let stable = 0;
    while (stable < 10) {
      await frame();
      stable = tileset.tilesLoaded ? stable + 1 : 0;
    }
    report.tilesLoaded = tileset.tilesLoaded;
    for (let i = 0; i < 5; i++) await frame();
    report.timingsMs.loaded = Math.round(performance.now() - t0);
    const s = tileset.statistics;
    report.stats = {
      tilesWithContentReady: s.numberOfTilesWithContentReady,
      tilesSelected: s.selected,
      tilesVisited: s.visited,
      featuresLoaded: s.numberOfFeaturesLoaded,
      featuresSelected: s.numberOfFeaturesSelected,
      trianglesSelected: s.numberOfTrianglesSelected,
      geometryByteLength: s.geometryByteLength,
      boundingSphereRadiusM: Math.round(sphere.radius),
    };
  } catch (e) {
    report.errors.push("exception: " + (e && e.stack ? e.stack : String(e)));
  }
  window.__done = true;
})();
</script></body></html>`;

function startServer(tilesetDir) {
  const roots = { "/cesium/": CESIUM_DIR, "/tiles/": tilesetDir };
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://127.0.0.1").pathname);
    if (path === "/" || path === "/index.html") {
      res.writeHead(200, { "content-type": TYPES[".html"] });
      res.end(PAGE.replace("TILESET_URL", JSON.stringify("/tiles/" + server.tilesetName)));
      return;
    }
    for (const [prefix, root] of Object.entries(roots)) {
      if (!path.startsWith(prefix)) continue;
      const file = resolve(root, "." + path.slice(prefix.length - 1));
      if (file !== root && !file.startsWith(root + sep)) break;
      try {
        const body = await readFile(file);
        res.writeHead(200, {
          "content-type": TYPES[extname(file).toLowerCase()] ?? "application/octet-stream",
        });
        res.end(body);
      } catch {
        break;
      }
      return;
    }
    if (!res.headersSent) {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
    }
  });
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => ok(server));
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const errors = [];
  let tilesetFile = opts.tileset;
  try {
    if ((await stat(tilesetFile)).isDirectory()) tilesetFile = join(tilesetFile, "tileset.json");
    await stat(tilesetFile);
  } catch {
    usage(`no tileset at ${opts.tileset}`);
  }
  try {
    await stat(join(CESIUM_DIR, "Cesium.js"));
  } catch {
    usage(`CesiumJS not installed at ${CESIUM_DIR} (run scripts/node-deps.sh)`);
  }
  const server = await startServer(dirname(tilesetFile));
  server.tilesetName = tilesetFile.slice(dirname(tilesetFile).length + 1);
  const origin = `http://127.0.0.1:${server.address().port}`;
  const profile = await mkdtemp(join(tmpdir(), "render-tiles-chromium-"));
  let context;
  let report = { errors: [], tilesLoaded: false };
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: opts.chromium,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: opts.width, height: opts.height },
      timeout: 30000,
    });
    // Nothing leaves loopback: abort (and report) anything that is not our server.
    await context.route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith(origin + "/") || url.startsWith("data:") || url.startsWith("blob:")) {
        return route.continue();
      }
      errors.push(`blocked non-local request: ${url}`);
      return route.abort("blockedbyclient");
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.on("console", (msg) => {
      if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
    });
    page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
    page.on("requestfailed", (req) => {
      const failure = req.failure()?.errorText ?? "";
      if (failure !== "net::ERR_BLOCKED_BY_CLIENT") {
        errors.push(`requestfailed: ${req.url()} ${failure}`);
      }
    });
    page.on("response", (res) => {
      if (res.status() >= 400) errors.push(`http ${res.status()}: ${res.url()}`);
    });
    await page.goto(origin + "/", { waitUntil: "load", timeout: opts.timeoutMs });
    try {
      await page.waitForFunction(() => window.__done === true, null, {
        timeout: Math.max(1000, opts.timeoutMs - (Date.now() - started)),
        polling: 200,
      });
    } catch (e) {
      errors.push(`timeout waiting for the tileset to load: ${e.message.split("\n")[0]}`);
    }
    report = await page.evaluate(() => window.__report ?? { errors: ["page never started"] });
    await page.screenshot({ path: opts.png, type: "png" });
  } catch (e) {
    errors.push(`driver: ${e.message.split("\n")[0]}`);
  } finally {
    if (context) await context.close().catch(() => {});
    server.close();
    await rm(profile, { recursive: true, force: true });
  }
  let pngBytes = 0;
  try {
    pngBytes = (await stat(opts.png)).size;
  } catch {
    errors.push(`no screenshot written to ${opts.png}`);
  }
  const allErrors = [...(report.errors ?? []), ...errors];
  const out = {
    ok: allErrors.length === 0 && report.tilesLoaded === true && pngBytes > 0,
    errors: allErrors,
    tilesLoaded: report.tilesLoaded === true,
    stats: report.stats ?? {},
    webgl: report.webgl ?? {},
    timingsMs: { ...(report.timingsMs ?? {}), total: Date.now() - started },
    png: opts.png,
    pngBytes,
  };
  console.log(JSON.stringify(out));
  process.exit(out.ok ? 0 : 1);
}

await main();
