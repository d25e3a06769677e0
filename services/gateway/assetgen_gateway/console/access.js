// Operators: projects and their API keys, shown only where the API has them (GET /api/projects/
// answers; a gateway without projects answers 404 and the section stays away).

import { api } from "./api.js";
import { confirmAction, dialog, errorBox, field, h, notify, uniqueId, when } from "./dom.js";

const SCOPES = ["read", "write", "admin"];

function table(caption, columns, rows) {
  return h(
    "div",
    { class: "table-scroll" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map((title) => h("th", { scope: "col" }, title)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: columns.length }, "None yet."))),
    ),
  );
}

function projectForm(reload) {
  const name = h("input", { type: "text", required: true, autocomplete: "off", pattern: "[a-z0-9_-]{1,63}" });
  const problem = errorBox();
  const form = h(
    "form",
    { class: "inline-form" },
    field("Project name", name, "Lower-case letters, digits, - and _.")[0],
    h("button", { type: "submit" }, "Add project"),
    problem.element,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.clear();
    try {
      await api("POST", "/api/projects/", { name: name.value });
      notify(`Added project ${name.value}.`);
      reload();
    } catch (error) {
      problem.show(error.message);
    }
  });
  return form;
}

function keyForm(projects, reload) {
  const name = h("input", { type: "text", required: true, autocomplete: "off" });
  const project = h("select", { required: true }, projects.map((item) => h("option", { value: item.id }, item.name)));
  const boxes = SCOPES.map((scope) => {
    const box = h("input", { type: "checkbox", value: scope, checked: scope === "read" });
    box.id = uniqueId("scope");
    return [box, h("label", { for: box.id, class: "check" }, box, ` ${scope}`)];
  });
  const problem = errorBox();
  const form = h(
    "form",
    { class: "grid-form" },
    field("Key name", name, "Who or what uses it.")[0],
    field("Project", project)[0],
    h("fieldset", { class: "scopes" }, h("legend", {}, "Scopes"), boxes.map(([, label]) => label)),
    problem.element,
    h("button", { type: "submit" }, "Create key"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.clear();
    const scopes = boxes.filter(([box]) => box.checked).map(([box]) => box.value);
    try {
      const created = await api("POST", "/api/keys/", { name: name.value, project: project.value, scopes });
      await dialog("Copy the new key now", [
        h("p", {}, `The key "${created.name}" is shown only this once.`),
        h("p", {}, h("code", { class: "secret" }, created.key)),
      ]);
      reload();
    } catch (error) {
      problem.show(error.message);
    }
  });
  return form;
}

/** The projects-and-keys section, or null when the API has no projects. */
export async function accessSection(reload) {
  let projects;
  try {
    projects = await api("GET", "/api/projects/");
  } catch (error) {
    if (error.status === 404 || error.status === 405 || error.status === 501) return null;
    throw error;
  }
  const keys = await api("GET", "/api/keys/");
  const names = new Map(projects.items.map((item) => [item.id, item.name]));

  async function revoke(key) {
    if (!(await confirmAction(`Revoke ${key.name}?`, `The key "${key.name}" will be refused from now on.`, "Revoke key"))) return;
    try {
      await api("DELETE", `/api/keys/${encodeURIComponent(key.id)}/`);
      notify(`Revoked ${key.name}.`);
      reload();
    } catch (error) {
      notify(error.message, "error");
    }
  }

  const projectRows = projects.items.map((item) =>
    h("tr", { "data-project": item.name }, h("th", { scope: "row" }, item.name), h("td", {}, item.id), h("td", {}, when(item.created_at))),
  );
  const keyRows = keys.items.map((key) =>
    h(
      "tr",
      { "data-key": key.id },
      h("th", { scope: "row" }, key.name),
      h("td", {}, names.get(key.project) || key.project),
      h("td", {}, key.scopes.join(", ")),
      h("td", {}, when(key.created_at)),
      h("td", {}, key.revoked_at ? `revoked ${when(key.revoked_at)}` : "valid"),
      h("td", {}, key.revoked_at ? "" : h("button", { type: "button", class: "danger", onclick: () => revoke(key) }, "Revoke")),
    ),
  );
  const titleId = uniqueId("section");
  return h(
    "section",
    { class: "card", "aria-labelledby": titleId },
    h("h2", { id: titleId }, "Projects and keys"),
    h("h3", {}, "Projects"),
    table("Projects", ["Name", "Id", "Created"], projectRows),
    projectForm(reload),
    h("h3", {}, "API keys"),
    table("API keys", ["Name", "Project", "Scopes", "Created", "State", ""], keyRows),
    h("h3", {}, "Create a key"),
    keyForm(projects.items, reload),
  );
}
