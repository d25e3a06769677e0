// Making assets in a box: the generate form (fields from the chosen model's variables) and the
// upload panel (file picker and drag-and-drop, with per-file progress).

import { api, uploadFile } from "./api.js";
import { errorBox, field, h, replace, uniqueId } from "./dom.js";

// Variables the form has dedicated controls for; the rest get one text field each.
const OWN_CONTROLS = new Set(["prompt", "image_url", "image_urls"]);
const LITERAL = /^(-?\d+(\.\d+)?|true|false)$/;

/** The generate form. box: { id, imageAssets() }, onAccepted(asset). */
export function generateForm(box, models, onAccepted) {
  const titleId = uniqueId("generate-title");
  const model = h("select", { name: "model", required: true });
  for (const item of models) model.append(h("option", { value: item.name }, `${item.name} (${(item.model_type || "").toLowerCase()})`));
  const prompt = h("textarea", { name: "prompt", rows: 3 });
  const variables = h("div", { class: "variables" });
  const parent = h("select", { name: "parent" });
  const imageUrl = h("input", { type: "url", name: "image_url", placeholder: "https://…" });
  const [modelField] = field("Model", model);
  const [promptField] = field("Prompt", prompt);
  const [parentField] = field("Parent image", parent, "For image to video: one of this box's pictures.");
  const [imageField] = field("Image URL", imageUrl, "Or a picture on the web.");
  const imageInputs = h("div", { class: "image-inputs" }, parentField, imageField);
  const problem = errorBox();
  const submit = h("button", { type: "submit" }, "Generate");
  let extra = [];

  function chosen() {
    return models.find((item) => item.name === model.value);
  }

  function refreshParents() {
    const selected = parent.value;
    replace(parent, h("option", { value: "" }, "None"));
    for (const asset of box.imageAssets()) {
      const label = asset.prompt || asset.id;
      parent.append(h("option", { value: asset.id }, label.length > 60 ? `${label.slice(0, 57)}…` : label));
    }
    parent.value = selected;
  }

  function refreshModel() {
    const current = chosen();
    const names = current ? current.variables : [];
    const required = new Set(current ? current.required_variables : []);
    prompt.required = required.has("prompt");
    promptField.hidden = Boolean(current) && !names.includes("prompt");
    imageInputs.hidden = !names.includes("image_url") && !names.includes("image_urls");
    extra = names
      .filter((name) => !OWN_CONTROLS.has(name))
      .map((name) => {
        const input = h("input", { type: "text", name, required: required.has(name) });
        const [wrapper] = field(required.has(name) ? name : `${name} (optional)`, input);
        return { name, input, wrapper };
      });
    replace(variables, extra.map((item) => item.wrapper));
    refreshParents();
  }

  const form = h(
    "form",
    { class: "card compose", "aria-labelledby": titleId },
    h("h2", { id: titleId }, "Generate"),
    modelField,
    promptField,
    variables,
    imageInputs,
    problem.element,
    submit,
  );
  model.addEventListener("change", refreshModel);
  parent.addEventListener("focus", refreshParents);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.clear();
    const body = { model: model.value, prompt: prompt.value };
    if (parent.value) body.parent_asset = parent.value;
    if (imageUrl.value) body.image_url = imageUrl.value;
    const config = {};
    for (const { name, input } of extra) {
      const value = input.value.trim();
      if (value) config[name] = LITERAL.test(value) ? JSON.parse(value) : value;
    }
    if (Object.keys(config).length) body.config = config;
    submit.disabled = true;
    try {
      onAccepted(await api("POST", `/api/boxes/${encodeURIComponent(box.id)}/generate/`, body));
      prompt.value = "";
    } catch (error) {
      problem.show(error.message);
    } finally {
      submit.disabled = false;
    }
  });
  if (!models.length) {
    replace(form, h("h2", { id: titleId }, "Generate"), h("p", {}, "No models are configured yet."));
  } else {
    refreshModel();
  }
  return { element: form, refreshParents };
}

/** The upload panel: files by picker or drop, each with its progress. onUploaded(asset). */
export function uploadPanel(boxId, onUploaded) {
  const titleId = uniqueId("upload-title");
  const input = h("input", { type: "file", multiple: true, accept: "image/*,video/*", class: "file-input" });
  input.id = uniqueId("files");
  const list = h("ul", { class: "uploads", "aria-label": "Uploads" });
  const zone = h(
    "div",
    { class: "drop-zone" },
    h("p", {}, "Drop pictures or videos here, or "),
    h("label", { for: input.id, class: "button" }, "Choose files"),
    input,
  );

  function send(file) {
    const bar = h("progress", { max: 1, value: 0, "aria-label": `Upload of ${file.name}` });
    const state = h("span", { class: "upload-state" }, "uploading");
    const row = h("li", {}, h("span", { class: "upload-name" }, file.name), bar, state);
    list.prepend(row);
    uploadFile(boxId, file, (share) => {
      bar.value = share;
    }).then(
      (asset) => {
        bar.value = 1;
        state.textContent = "done";
        row.dataset.state = "done";
        onUploaded(asset);
      },
      (error) => {
        state.textContent = error.message;
        state.className = "upload-state error";
        row.dataset.state = "failed";
      },
    );
  }

  input.addEventListener("change", () => {
    for (const file of input.files) send(file);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    for (const file of event.dataTransfer.files) send(file);
  });
  return h("section", { class: "card", "aria-labelledby": titleId }, h("h2", { id: titleId }, "Upload"), zone, list);
}
