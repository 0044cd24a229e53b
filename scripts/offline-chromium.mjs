// Chromium switches shared by the headless browser scripts (render-tiles.mjs, dashboard-check.mjs).
//
// The machine's network is closed: without these Chromium keeps dialling Google services.
// SwiftShader gives WebGL without a GPU.
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--use-gl=swiftshader",
  "--enable-unsafe-swiftshader",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
