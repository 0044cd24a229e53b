// Bundle the dashboard into src/citytwin/ui/static: app.js + app.css (MapLibre's CSS included),
// index.html and MapLibre's worker. Everything is local: no CDN, fonts or tiles.
//
// Usage: node web/build.mjs [--dev]   (--dev: no minification, inline source maps)
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const WEB = dirname(fileURLToPath(import.meta.url));
const OUT = resolve(WEB, "..", "src", "citytwin", "ui", "static");
const dev = process.argv.includes("--dev");

await rm(OUT, { recursive: true, force: true });
await mkdir(OUT, { recursive: true });
const result = await build({
  entryPoints: { app: join(WEB, "src", "main.js") },
  outdir: OUT,
  bundle: true,
  format: "esm", // MapLibre finds its worker next to app.js through import.meta.url
  target: ["es2022"],
  minify: !dev,
  sourcemap: dev ? "inline" : false,
  legalComments: "linked",
  logLevel: "warning",
  metafile: true,
});
// MapLibre 6 loads its worker as a separate module; the worker file name is what it expects.
const worker = join(WEB, "node_modules", "maplibre-gl", "dist", "maplibre-gl-worker.mjs");
await copyFile(worker, join(OUT, "maplibre-gl-worker.mjs"));
await copyFile(join(WEB, "index.html"), join(OUT, "index.html"));
for (const [file, { bytes }] of Object.entries(result.metafile.outputs)) {
  console.log(`${file.slice(file.indexOf("static"))} ${(bytes / 1024).toFixed(0)} KiB`);
}
