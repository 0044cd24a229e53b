// The linkage table page (연계테이블): each service of the catalog × the seven CPS functions,
// from GET /services/linkage?format=json, each cell coloured by its status.
import { getJson } from "./api.js";
import { currentLanguage } from "./i18n.js";

// Resolves to the number of services listed.
export async function showLinkage(element) {
  const table = await getJson("/services/linkage", { format: "json", lang: currentLanguage() });
  const head = row("th", ["", ...table.functions.map((f) => f.label)]);
  const body = table.rows.map((service) => serviceRow(service));
  element.replaceChildren(title(table.title), legend(table.statuses), grid(head, body));
  return table.rows.length;
}

function serviceRow(service) {
  const tr = document.createElement("tr");
  tr.dataset.service = service.service;
  const name = cell("th", service.name);
  name.append(small(service.department));
  tr.append(name, ...service.cells.map(statusCell));
  return tr;
}

function statusCell(entry) {
  const td = cell("td", "");
  td.className = `status-${entry.status}`;
  td.title = entry.status_label;
  const names = entry.items.map((item) => item.label ?? item.name).filter(Boolean);
  td.append(small(entry.status_label), document.createTextNode(names.join(", ")));
  if (entry.note) td.append(small(entry.note));
  return td;
}

function legend(statuses) {
  const list = document.createElement("p");
  list.className = "linkage-legend";
  for (const [status, label] of Object.entries(statuses)) {
    const chip = document.createElement("span");
    chip.className = `chip status-${status}`;
    chip.textContent = label;
    list.append(chip);
  }
  return list;
}

function grid(head, body) {
  const table = document.createElement("table");
  table.className = "linkage";
  const thead = document.createElement("thead");
  thead.append(head);
  const tbody = document.createElement("tbody");
  tbody.append(...body);
  table.append(thead, tbody);
  return table;
}

function row(tag, texts) {
  const tr = document.createElement("tr");
  tr.append(...texts.map((text) => cell(tag, text)));
  return tr;
}

function cell(tag, text) {
  const element = document.createElement(tag);
  element.textContent = text;
  return element;
}

function small(text) {
  const element = document.createElement("small");
  element.textContent = text;
  return element;
}

function title(text) {
  const element = document.createElement("h2");
  element.textContent = text;
  return element;
}
