// The control side panel: tasks awaiting approval (approve / reject with a reason) and the
// latest alerts. Without a control loop the server answers 404 and the panel says so.
import { ApiError, getJson, getToken, postJson, setToken } from "./api.js";
import { t } from "./i18n.js";

export function setUpTokenForm(form) {
  const input = form.querySelector("input");
  input.value = getToken();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value);
    form.querySelector(".status").textContent = t("tokenSaved");
  });
}

export async function refreshPanel(tasksElement, alertsElement, { control = true } = {}) {
  if (!control) return showControlOff(tasksElement, alertsElement);
  try {
    const tasks = await getJson("/control/tasks", { state: "awaiting_approval" });
    renderTasks(tasksElement, tasks, () => refreshPanel(tasksElement, alertsElement));
    renderAlerts(alertsElement, await getJson("/control/alerts", { limit: 20 }));
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
    showControlOff(tasksElement, alertsElement);
  }
}

function showControlOff(...elements) {
  for (const element of elements) element.replaceChildren(note(t("controlOff"), "control-off"));
}

function renderTasks(element, tasks, refresh) {
  if (!tasks.length) return element.replaceChildren(note(t("noTasks")));
  element.replaceChildren(...tasks.map((task) => taskCard(task, refresh)));
}

function taskCard(task, refresh) {
  const card = document.createElement("li");
  card.className = "task";
  card.dataset.taskId = task.id;
  const what = `${task.actuator} · ${task.command} ${JSON.stringify(task.parameters)}`;
  const why = [task.rule, task.scope].filter(Boolean).join(" @ ");
  card.append(line(what, "task-what"), line(why, "task-why"));
  const status = line("", "task-status");
  for (const verb of ["approve", "reject"]) {
    const button = document.createElement("button");
    button.className = verb;
    button.dataset.i18n = verb;
    button.textContent = t(verb);
    button.addEventListener("click", () => decide(task.id, verb, status).then(refresh));
    card.append(button);
  }
  card.append(status);
  return card;
}

async function decide(taskId, verb, status) {
  const reason = window.prompt(t("reasonPrompt"));
  if (!reason?.trim()) return;
  try {
    const task = await postJson(`/control/tasks/${encodeURIComponent(taskId)}/${verb}`, { reason });
    status.textContent = `${t("done")}: ${task.state}`;
  } catch (error) {
    status.textContent = `${error.status ?? ""} ${error.message}`;
  }
}

function renderAlerts(element, alerts) {
  if (!alerts.length) return element.replaceChildren(note(t("noAlerts")));
  element.replaceChildren(
    ...alerts.map((alert) => line(`${alert.at.slice(11, 19)} ${alertText(alert)}`, "alert")),
  );
}

function alertText(alert) {
  return [alert.kind, alert.message].filter(Boolean).join(": ");
}

function line(text, className) {
  const element = document.createElement("li");
  element.className = className;
  element.textContent = text;
  return element;
}

function note(text, className = "note") {
  return line(text, className);
}
