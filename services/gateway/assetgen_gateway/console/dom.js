// Small DOM helpers: elements built with textContent only (API text is never parsed as HTML).

/** An element: attributes (on* functions become listeners), then children (strings become text). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

/** Appends children (nested arrays, strings, nodes; null skipped). */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces a node's children. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let uniqueCounter = 0;
/** An id unique in the page, to tie labels to their controls. */
export function uniqueId(prefix) {
  uniqueCounter += 1;
  return `${prefix}-${uniqueCounter}`;
}

/** A labelled control: returns [wrapper, control]. */
export function field(label, control, hint) {
  control.id = control.id || uniqueId("field");
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintId = uniqueId("hint");
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("small", { id: hintId, class: "hint" }, hint));
  }
  return [h("div", { class: "field" }, parts), control];
}

/** A local time for an ISO timestamp. */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** Shows a passing message in the page's live region. */
export function notify(message, kind = "info") {
  const notice = document.getElementById("notice");
  replace(notice, h("p", { class: `notice ${kind}` }, message));
}

/** An error message box that screen readers announce. */
export function errorBox() {
  const box = h("p", { class: "error", role: "alert", hidden: true });
  return {
    element: box,
    show(message) {
      box.textContent = message;
      box.hidden = false;
    },
    clear() {
      box.textContent = "";
      box.hidden = true;
    },
  };
}

/** A modal dialog with a title and content; resolves with the button value it closed with. */
export function dialog(title, content, buttons = [["Close", "close"]]) {
  const titleId = uniqueId("dialog-title");
  const actions = buttons.map(([label, value, cls]) =>
    h("button", { type: "submit", value, class: cls || "" }, label),
  );
  const form = h("form", { method: "dialog" }, h("div", { class: "dialog-actions" }, actions));
  const box = h(
    "dialog",
    { "aria-labelledby": titleId },
    h("h2", { id: titleId }, title),
    h("div", { class: "dialog-body" }, content),
    form,
  );
  document.body.append(box);
  return new Promise((resolve) => {
    box.addEventListener("close", () => {
      box.remove();
      resolve(box.returnValue || "close");
    });
    box.showModal();
    // The first button is the harmless one (Cancel / Close).
    actions[0].focus();
  });
}

/** Asks for confirmation of something that cannot be undone. */
export async function confirmAction(title, message, action) {
  const answer = await dialog(title, h("p", {}, message), [
    ["Cancel", "close"],
    [action, "confirm", "danger"],
  ]);
  return answer === "confirm";
}
