// One asset as a card of the box's grid: its picture or video, status, progress, where it came
// from, and what can be done with it (open, download, cancel, retry, history, delete).

import { api } from "./api.js";
import { confirmAction, dialog, h, notify, replace, when } from "./dom.js";

export const IN_FLIGHT = new Set(["PENDING", "PROCESSING"]);
const RETRYABLE = new Set(["FAILED", "CANCELED"]);
const SOURCE_WORDS = { GENERATED: "Generated", UPLOADED: "Uploaded", IMG2VID: "Image to video" };

/** "image", "video" or "" for an asset, from its stored type or else its model's. */
export function mediaKind(asset, models) {
  const type = asset.content_type || "";
  if (type.startsWith("image/")) return "image";
  if (type.startsWith("video/")) return "video";
  if (asset.source_type === "IMG2VID") return "video";
  const model = models.get(asset.model);
  if (model) return model.model_type === "VIDEO" ? "video" : "image";
  return "";
}

function describe(asset) {
  return asset.prompt || (asset.source_type === "UPLOADED" ? "Uploaded file" : `Asset ${asset.id}`);
}

function mediaElement(asset, kind, posterUrl) {
  if (kind === "video") {
    return h("video", { controls: true, preload: "metadata", src: asset.file_url, poster: posterUrl || null, "aria-label": describe(asset) });
  }
  return h("img", { src: asset.file_url, alt: describe(asset), loading: "lazy", decoding: "async" });
}

async function showHistory(asset) {
  const body = h("p", {}, "Loading…");
  const opened = dialog(`History of ${describe(asset)}`, body);
  try {
    const history = await api("GET", `/api/assets/${encodeURIComponent(asset.id)}/history/`);
    const rows = history.items.map((item) =>
      h(
        "tr",
        {},
        h("td", {}, when(item.at)),
        h("td", {}, String(item.attempt)),
        h("td", {}, `${item.from_status || "—"} → ${item.to_status}`),
        h("td", {}, item.step),
        h("td", {}, item.message),
      ),
    );
    replace(
      body,
      h(
        "div",
        { class: "table-scroll" },
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ["When", "Attempt", "Status", "Step", "Why"].map((title) => h("th", { scope: "col" }, title)))),
          h("tbody", {}, rows),
        ),
      ),
    );
  } catch (error) {
    replace(body, h("span", { class: "error", role: "alert" }, error.message));
  }
  await opened;
}

function showFullSize(asset, kind) {
  const media =
    kind === "video"
      ? h("video", { controls: true, src: asset.file_url, class: "full", "aria-label": describe(asset) })
      : h("img", { src: asset.file_url, alt: describe(asset), class: "full" });
  dialog(describe(asset), [media, h("p", {}, h("a", { href: asset.file_url, target: "_blank", rel: "noopener" }, "Open in a new tab"))]);
}

/**
 * A card that renders an asset and re-renders it on update(asset); the picture or video element
 * is kept across updates once the asset is complete, so it does not reload on every event.
 * board: { models, capabilities, posterOf(asset), changed(asset), removed(id) }.
 */
export function assetCard(asset, board) {
  const card = h("li", { class: "asset", id: `asset-${asset.id}`, "data-asset-id": asset.id, tabindex: "-1" });
  let media = null;
  let current = asset;

  async function act(action, path, method = "POST") {
    try {
      const updated = await api(method, path);
      board.changed(updated);
      notify(`${action}: ${describe(updated)}`);
    } catch (error) {
      notify(`${action} failed: ${error.message}`, "error");
    }
  }

  async function remove() {
    const confirmed = await confirmAction(
      "Delete this asset?",
      `"${describe(current)}" and its file will be deleted. This cannot be undone.`,
      "Delete asset",
    );
    if (!confirmed) return;
    try {
      await api("DELETE", `/api/assets/${encodeURIComponent(current.id)}/`);
      board.removed(current.id);
      notify(`Deleted ${describe(current)}.`);
    } catch (error) {
      notify(`Delete failed: ${error.message}`, "error");
    }
  }

  function render() {
    const a = current;
    const kind = mediaKind(a, board.models);
    card.dataset.status = a.status || "PENDING";
    card.dataset.kind = kind;
    card.dataset.source = a.source_type || "";
    card.setAttribute("aria-label", `${describe(a)}, ${(a.status || "").toLowerCase()}`);
    if (a.status === "COMPLETED" && a.file_url) {
      if (!media || media.dataset.kind !== kind) {
        media = mediaElement(a, kind, board.posterOf(a));
        media.dataset.kind = kind;
      }
    } else {
      media = null;
    }
    const mediaBox = h("div", { class: "media" }, media || h("span", { class: "placeholder" }, a.status === "FAILED" ? "No file" : (a.status || "").toLowerCase()));
    const status = h("span", { class: `badge status-${(a.status || "").toLowerCase()}` }, a.status);
    let progress = null;
    if (IN_FLIGHT.has(a.status)) {
      progress = h("progress", { max: 1, "aria-label": "Progress" });
      if (a.progress > 0) progress.value = a.progress;
    }
    const origin = [SOURCE_WORDS[a.source_type] || a.source_type || ""];
    if (a.model) origin.push(` with ${a.model}`);
    const parent = a.parent_asset
      ? h("span", {}, " from ", h("a", { href: `#asset-${a.parent_asset}`, class: "parent" }, `asset ${a.parent_asset.slice(0, 8)}`))
      : null;
    const actions = h("div", { class: "actions" });
    if (a.status === "COMPLETED" && a.file_url) {
      actions.append(
        h("button", { type: "button", onclick: () => showFullSize(a, kind) }, "Open"),
        h("a", { href: a.file_url, download: "", target: "_blank", rel: "noopener", class: "button" }, "Download"),
      );
    }
    if (board.capabilities.write && IN_FLIGHT.has(a.status)) {
      actions.append(h("button", { type: "button", onclick: () => act("Cancelled", `/api/assets/${encodeURIComponent(a.id)}/cancel/`) }, "Cancel"));
    }
    if (board.capabilities.write && RETRYABLE.has(a.status) && a.source_type !== "UPLOADED") {
      actions.append(h("button", { type: "button", onclick: () => act("Retrying", `/api/assets/${encodeURIComponent(a.id)}/retry/`) }, "Retry"));
    }
    actions.append(h("button", { type: "button", onclick: () => showHistory(a) }, "History"));
    if (board.capabilities.write) {
      actions.append(h("button", { type: "button", class: "danger", onclick: remove }, "Delete"));
    }
    replace(
      card,
      mediaBox,
      h(
        "div",
        { class: "meta" },
        h("div", { class: "status-line" }, status, progress, a.attempt > 1 ? h("small", {}, `attempt ${a.attempt}`) : null),
        h("p", { class: "prompt" }, describe(a)),
        h("p", { class: "origin" }, origin.join(""), parent),
        a.status === "FAILED" && a.error_message ? h("p", { class: "error asset-error" }, a.error_message) : null,
        h("small", { class: "created" }, when(a.created_at)),
      ),
      actions,
    );
  }

  render();
  return {
    element: card,
    get asset() {
      return current;
    },
    update(next) {
      current = { ...current, ...next };
      render();
    },
  };
}
