// Operators: providers (from a preset, with or without a key), the presets, models with their
// request templates, and projects and keys where the API has them. Nothing the API lacks is shown.

import { accessSection } from "./access.js";
import { api } from "./api.js";
import { confirmAction, errorBox, field, h, notify, replace, uniqueId, when } from "./dom.js";

const STARTER_TEMPLATE = { prompt: "{{prompt}}" };

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

/** Parses a template text; throws an Error worded for the form. */
function parseTemplate(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`The template is not JSON: ${error.message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("The template must be a JSON object.");
  return value;
}

function section(title, ...content) {
  const id = uniqueId("section");
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), content);
}

function providerForm(presets, reload) {
  const name = h("input", { type: "text", required: true, autocomplete: "off" });
  const preset = h("select", { required: true }, presets.map((item) => h("option", { value: item.name }, item.name)));
  const baseUrl = h("input", { type: "url", placeholder: "the preset's" });
  const key = h("input", { type: "password", autocomplete: "new-password" });
  const problem = errorBox();
  const form = h(
    "form",
    { class: "grid-form" },
    field("Provider name", name)[0],
    field("Preset", preset)[0],
    field("Base URL", baseUrl, "Empty: the preset's.")[0],
    field("Provider API key", key, "Stored encrypted; never shown again.")[0],
    problem.element,
    h("button", { type: "submit" }, "Add provider"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.clear();
    const body = { name: name.value, preset: preset.value };
    if (baseUrl.value) body.base_url = baseUrl.value;
    if (key.value) body.api_key = key.value;
    try {
      await api("POST", "/api/providers/", body);
      notify(`Added provider ${name.value}.`);
      reload();
    } catch (error) {
      problem.show(error.message);
    }
  });
  return form;
}

function templateEditor(model, reload) {
  const text = h("textarea", { rows: 10, class: "code", spellcheck: "false" });
  text.value = JSON.stringify(model.request_schema, null, 2);
  const problem = errorBox();
  const form = h("form", {}, field(`Request template of ${model.name}`, text)[0], problem.element, h("button", { type: "submit" }, "Save template"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.clear();
    try {
      await api("PATCH", `/api/models/${encodeURIComponent(model.id)}/`, { request_schema: parseTemplate(text.value) });
      notify(`Saved the template of ${model.name}.`);
      reload();
    } catch (error) {
      problem.show(error.message);
    }
  });
  return form;
}

function modelForm(providers, models, reload) {
  const provider = h("select", { required: true }, providers.map((item) => h("option", { value: item.name }, item.name)));
  const name = h("input", { type: "text", required: true, autocomplete: "off" });
  const type = h("select", {}, h("option", { value: "IMAGE" }, "Image"), h("option", { value: "VIDEO" }, "Video"));
  const start = h("select", {}, h("option", { value: "" }, "A blank template"), models.map((item) => h("option", { value: item.name }, `${item.name}'s template`)));
  const text = h("textarea", { rows: 8, class: "code", spellcheck: "false", required: true });
  text.value = JSON.stringify(STARTER_TEMPLATE, null, 2);
  start.addEventListener("change", () => {
    const source = models.find((item) => item.name === start.value);
    text.value = JSON.stringify(source ? source.request_schema : STARTER_TEMPLATE, null, 2);
    if (source) type.value = source.model_type;
  });
  const problem = errorBox();
  const form = h(
    "form",
    { class: "grid-form" },
    field("Provider", provider)[0],
    field("Model name", name)[0],
    field("Makes", type)[0],
    field("Start from", start)[0],
    field("Request template", text, "JSON; {{variable}} placeholders, {{name?}} for optional ones.")[0],
    problem.element,
    h("button", { type: "submit" }, "Add model"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.clear();
    try {
      const body = { provider: provider.value, name: name.value, model_type: type.value, request_schema: parseTemplate(text.value) };
      await api("POST", "/api/models/", body);
      notify(`Added model ${name.value}.`);
      reload();
    } catch (error) {
      problem.show(error.message);
    }
  });
  return form;
}

/** Renders the operators' page into main. */
export async function adminPage(main) {
  async function load() {
    const [providers, presets, models, access] = await Promise.all([
      api("GET", "/api/providers/"),
      api("GET", "/api/presets/"),
      api("GET", "/api/models/"),
      accessSection(load),
    ]);
    const providerRows = providers.items.map((item) =>
      h(
        "tr",
        { "data-provider": item.name },
        h("th", { scope: "row" }, item.name),
        h("td", {}, item.preset || "inline profile"),
        h("td", {}, item.base_url),
        h("td", {}, item.has_api_key ? "configured" : "none"),
        h("td", {}, when(item.created_at)),
        h("td", {}, h("button", { type: "button", class: "danger", onclick: () => removeProvider(item) }, "Delete")),
      ),
    );
    const modelRows = models.items.map((item) => {
      const editor = h("td", { colspan: 5, class: "editor-cell" });
      const editorRow = h("tr", { hidden: true }, editor);
      const edit = h("button", { type: "button", "aria-expanded": "false" }, "Edit template");
      edit.addEventListener("click", () => {
        const open = editorRow.hidden;
        editorRow.hidden = !open;
        edit.setAttribute("aria-expanded", String(open));
        if (open) replace(editor, templateEditor(item, load));
      });
      return [
        h(
          "tr",
          { "data-model": item.name },
          h("th", { scope: "row" }, item.name),
          h("td", {}, item.provider),
          h("td", {}, (item.model_type || "").toLowerCase()),
          h("td", {}, item.variables.map((name) => (item.required_variables.includes(name) ? name : `${name}?`)).join(", ")),
          h("td", {}, edit),
        ),
        editorRow,
      ];
    });
    replace(
      main,
      h("h1", {}, "Operators"),
      section("Providers", table("Providers", ["Name", "Preset", "Base URL", "API key", "Created", ""], providerRows), h("h3", {}, "Add a provider"), providerForm(presets.items, load)),
      section("Models", table("Models", ["Name", "Provider", "Makes", "Variables", ""], modelRows.flat()), h("h3", {}, "Add a model"), modelForm(providers.items, models.items, load)),
      access,
      section(
        "Presets",
        h("dl", { class: "presets" }, presets.items.map((item) => [h("dt", {}, item.name), h("dd", {}, item.description)])),
      ),
    );
  }

  async function removeProvider(item) {
    if (!(await confirmAction(`Delete provider ${item.name}?`, `The provider "${item.name}" and its stored key will be deleted.`, "Delete provider"))) return;
    try {
      await api("DELETE", `/api/providers/${encodeURIComponent(item.id)}/`);
      notify(`Deleted provider ${item.name}.`);
      await load();
    } catch (error) {
      notify(error.message, "error");
    }
  }

  await load();
}
