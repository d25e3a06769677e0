// The boxes: a list with each box's asset counts by status; create, rename, delete.

import { api, query } from "./api.js";
import { confirmAction, errorBox, field, h, notify, replace, when } from "./dom.js";

// There is no count API: a box's counts come from one page of its newest assets, which keeps the
// list cheap; a box with more says so ("200+").
const COUNTED_ASSETS = 200;
const STATUSES = ["PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELED"];

async function countsOf(boxId) {
  const page = await api("GET", `/api/boxes/${encodeURIComponent(boxId)}/assets/${query({ page_size: COUNTED_ASSETS })}`);
  const counts = Object.fromEntries(STATUSES.map((status) => [status, 0]));
  for (const asset of page.items) counts[asset.status] = (counts[asset.status] || 0) + 1;
  return { counts, total: page.items.length, more: Boolean(page.next_cursor) };
}

function countsView({ counts, total, more }) {
  const parts = STATUSES.filter((status) => counts[status]).map((status) =>
    h("span", { class: `badge status-${status.toLowerCase()}`, "data-count-status": status }, `${counts[status]} ${status.toLowerCase()}`),
  );
  const summary = `${total}${more ? "+" : ""} asset${total === 1 && !more ? "" : "s"}`;
  return [h("span", { class: "total" }, summary), ...parts];
}

function boxRow(box, context, reload) {
  const counts = h("span", { class: "counts" }, "…");
  countsOf(box.id).then(
    (result) => replace(counts, countsView(result)),
    (error) => replace(counts, h("span", { class: "error" }, error.message)),
  );
  const title = h("a", { href: `/boxes/${encodeURIComponent(box.id)}`, "data-link": true, class: "box-name" }, box.name);
  const row = h("li", { class: "box-row", "data-box-id": box.id });
  const actions = h("div", { class: "actions" });
  if (context.capabilities.write) {
    actions.append(
      h("button", { type: "button", onclick: () => rename(), "aria-label": `Rename ${box.name}` }, "Rename"),
      h("button", { type: "button", class: "danger", onclick: () => remove(), "aria-label": `Delete ${box.name}` }, "Delete"),
    );
  }
  const view = () => replace(row, h("div", { class: "box-main" }, title, h("small", {}, `created ${when(box.created_at)}${box.project ? ` · project ${box.project}` : ""}`)), counts, actions);

  function rename() {
    const input = h("input", { type: "text", value: box.name, required: true, maxlength: 200 });
    const [nameField] = field(`New name for ${box.name}`, input);
    const problem = errorBox();
    const form = h(
      "form",
      { class: "inline-form" },
      nameField,
      h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", onclick: view }, "Cancel"),
      problem.element,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const updated = await api("PATCH", `/api/boxes/${encodeURIComponent(box.id)}/`, { name: input.value });
        box.name = updated.name;
        title.textContent = updated.name;
        view();
        notify(`Renamed to ${updated.name}.`);
      } catch (error) {
        problem.show(error.message);
      }
    });
    replace(row, form);
    input.focus();
    input.select();
  }

  async function remove() {
    const confirmed = await confirmAction(
      `Delete ${box.name}?`,
      `The box "${box.name}" and every asset in it will be deleted, files included. This cannot be undone.`,
      "Delete box",
    );
    if (!confirmed) return;
    try {
      const result = await api("DELETE", `/api/boxes/${encodeURIComponent(box.id)}/`);
      notify(`Deleted ${box.name} and its ${result.deleted_assets} assets.`);
      reload();
    } catch (error) {
      notify(error.message, "error");
    }
  }

  view();
  return row;
}

/** Renders the boxes page into main. */
export async function boxesPage(main, context) {
  const list = h("ul", { class: "boxes", "aria-label": "Boxes" });
  const more = h("button", { type: "button", hidden: true }, "Load more boxes");
  let cursor = "";

  async function load(reset) {
    if (reset) {
      cursor = "";
      list.replaceChildren();
    }
    const page = await api("GET", `/api/boxes/${query({ page_size: 50, cursor })}`);
    for (const box of page.items) list.append(boxRow(box, context, () => load(true)));
    if (!list.children.length) list.append(h("li", { class: "empty" }, "No boxes yet."));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  }
  more.addEventListener("click", () => load(false));

  const parts = [h("h1", {}, "Boxes")];
  if (context.capabilities.write) {
    const name = h("input", { type: "text", required: true, maxlength: 200, autocomplete: "off" });
    const [nameField] = field("Box name", name);
    const problem = errorBox();
    const form = h("form", { class: "inline-form card" }, nameField, h("button", { type: "submit" }, "Create box"), problem.element);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      problem.clear();
      try {
        const box = await api("POST", "/api/boxes/", { name: name.value });
        context.navigate(`/boxes/${encodeURIComponent(box.id)}`);
      } catch (error) {
        problem.show(error.message);
      }
    });
    parts.push(form);
  }
  parts.push(list, more);
  replace(main, parts);
  await load(true);
}
