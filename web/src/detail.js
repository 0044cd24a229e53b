// Sensor detail: clicking a sensor opens a panel with its last 24 hours of the chosen property
// from the SensorThings API, drawn as an SVG line chart (no chart library).
import { getJson } from "./api.js";
import { t } from "./i18n.js";

const DAY_MS = 24 * 3600 * 1000;
const SVG = "http://www.w3.org/2000/svg";
const SIZE = { width: 300, height: 140, left: 34, right: 6, top: 8, bottom: 18 };

// Resolves to the number of observations drawn.
export async function showSensorDetail(element, feature, property) {
  const latest = feature.properties.latest?.[property];
  const heading = document.createElement("h2");
  heading.textContent = `${feature.properties.name ?? feature.id} · ${t(property)}`;
  const where = line([feature.properties.gu, feature.properties.dong].filter(Boolean).join(" "));
  element.replaceChildren(heading, where);
  element.hidden = false;
  if (!latest) {
    element.append(line(t("noData")));
    return 0;
  }
  const observations = await lastDay(latest.datastream_id, latest.time);
  const count = line(`${t("last24h")} · ${observations.length}`);
  element.append(chart(observations, latest.unit), count);
  return observations.length;
}

async function lastDay(datastreamId, latestTime) {
  const since = new Date(Date.parse(latestTime) - DAY_MS).toISOString().replace(".000", "");
  const page = await getJson(`/v1.1/Datastreams(${datastreamId})/Observations`, {
    $filter: `phenomenonTime gt ${since}`,
    $orderby: "phenomenonTime asc",
    $select: "phenomenonTime,result",
    $top: 5000,
  });
  return page.value
    .map((o) => ({ time: Date.parse(o.phenomenonTime), value: o.result }))
    .filter((o) => typeof o.value === "number");
}

function chart(points, unit) {
  const svg = node("svg", { viewBox: `0 0 ${SIZE.width} ${SIZE.height}`, class: "chart" });
  if (!points.length) return svg;
  const times = points.map((p) => p.time);
  const values = points.map((p) => p.value);
  const x = scale(Math.min(...times), Math.max(...times), SIZE.left, SIZE.width - SIZE.right);
  const [low, high] = [Math.min(...values), Math.max(...values)];
  const y = scale(low, high, SIZE.height - SIZE.bottom, SIZE.top);
  const vertex = (p) => `${x(p.time).toFixed(1)},${y(p.value).toFixed(1)}`;
  const path = points.map((p, i) => `${i ? "L" : "M"}${vertex(p)}`);
  svg.append(
    node("path", { d: path.join(""), class: "chart-line" }),
    label(SIZE.left - 3, y(high) + 4, high.toFixed(1), "end"),
    label(SIZE.left - 3, y(low), low.toFixed(1), "end"),
    label(SIZE.left, SIZE.height - 4, hour(times[0]), "start"),
    label(SIZE.width - SIZE.right, SIZE.height - 4, `${hour(times.at(-1))} UTC · ${unit}`, "end"),
  );
  return svg;
}

function scale(from, to, start, end) {
  const span = to - from || 1;
  return (value) => start + ((value - from) / span) * (end - start);
}

const hour = (ms) => new Date(ms).toISOString().slice(11, 16);

function label(x, y, text, anchor) {
  const element = node("text", { x, y, "text-anchor": anchor, class: "chart-label" });
  element.textContent = text;
  return element;
}

function node(tag, attributes) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

function line(text) {
  const element = document.createElement("p");
  element.textContent = text;
  return element;
}
