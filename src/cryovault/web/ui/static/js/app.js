// cryovault portal behaviour: dialogs, multi-select, panels, explorer, keyboard, htmx errors.
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const app = $("#app");

// --- htmx: show refused requests where the user is looking -----------------------------
document.addEventListener("htmx:responseError", (event) => {
  const message = event.detail.xhr.responseText || "The request failed.";
  const form = event.detail.elt.closest("form");
  const slot = form && (form.querySelector(".form-error") || form.closest("div")?.querySelector(".form-error"));
  if (slot) { slot.textContent = message; slot.hidden = false; return; }
  flash(message);
});
document.addEventListener("htmx:sendError", () => flash("The server cannot be reached; try again."));
document.addEventListener("htmx:beforeRequest", (event) => {
  const form = event.detail.elt.closest("form");
  const slot = form && form.querySelector(".form-error");
  if (slot) slot.textContent = "";
});

function flash(message) {
  const box = $("#flash");
  if (!box) return;
  box.textContent = message;
  box.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

// --- dialogs ------------------------------------------------------------------------------
function openDialog(id) {
  const dialog = document.getElementById(id);
  if (!dialog) return;
  dialog.querySelectorAll(".form-error").forEach((e) => { e.textContent = ""; });
  dialog.showModal();
  const first = dialog.querySelector("[autofocus]") || dialog.querySelector("input:not([type=hidden]), select, textarea");
  if (first) { first.focus(); first.select?.(); }
}
document.addEventListener("click", (event) => {
  const opener = event.target.closest("[data-open]");
  if (opener) openDialog(opener.dataset.open);
  const closer = event.target.closest("[data-close]");
  if (closer) closer.closest("dialog").close();
  const rename = event.target.closest("[data-rename]");
  if (rename) openRename(rename.dataset.rename, rename.dataset.name);
  const deleteOne = event.target.closest("[data-delete-one]");
  if (deleteOne) openDelete([{ id: deleteOne.dataset.deleteOne, name: deleteOne.dataset.name }], deleteOne.dataset.after);
});

function openRename(id, name) {
  const form = $("#rename-form");
  form.setAttribute("hx-post", `/ui/elements/${id}/rename`);
  window.htmx?.process(form);
  $("#rename-name").value = name;
  openDialog("rename-dialog");
}

let afterDelete = null;
function openDelete(items, after) {
  if (!items.length) return;
  afterDelete = after || null;
  $("#delete-what").textContent = items.length === 1 ? `“${items[0].name}”` : `${items.length} elements`;
  $("#delete-ids").replaceChildren(...items.map((item) => {
    const input = document.createElement("input");
    input.type = "hidden"; input.name = "ids"; input.value = item.id;
    return input;
  }));
  openDialog("delete-dialog");
}
// Grey out at once: the deletion is requested; the page then reloads with the job running.
document.addEventListener("htmx:beforeRequest", (event) => {
  if (event.detail.elt.id !== "delete-form") return;
  $$("#delete-ids input").forEach((input) => {
    $$(`[data-id="${input.value}"]`).forEach((row) => row.classList.add("is-deleting"));
  });
});
document.addEventListener("htmx:beforeOnLoad", (event) => {
  if (event.detail.elt.id === "delete-form" && event.detail.xhr.status < 300 && afterDelete) {
    event.preventDefault();
    window.location.assign(afterDelete);
  }
});

// Add dialog: show the fields of the chosen kind.
function syncKindFields() {
  const kind = $("#add-kind")?.value;
  $$("[data-for-kind]").forEach((field) => {
    const on = field.dataset.forKind === kind;
    field.hidden = !on;
    field.querySelectorAll("select, input").forEach((input) => { input.disabled = !on; });
  });
}
$("#add-kind")?.addEventListener("change", syncKindFields);
syncKindFields();

// --- multi-select ---------------------------------------------------------------------------
function selected() {
  return $$(".select-item:checked").map((box) => ({ id: box.value, name: box.dataset.name, actions: (box.dataset.actions || "").split(" ").filter(Boolean) }));
}
function syncSelection() {
  const items = selected();
  const bar = $("#selection-bar");
  if (!bar) return;
  bar.hidden = items.length === 0;
  $("#selection-count").textContent = `${items.length} selected`;
  // Only the actions every selected element allows.
  const common = items.length ? items.map((i) => i.actions).reduce((a, b) => a.filter((x) => b.includes(x))) : [];
  $$("[data-action]", bar).forEach((button) => { button.hidden = !common.includes(button.dataset.action); });
  const all = $("#select-all");
  const boxes = $$(".select-item");
  if (all) all.checked = boxes.length > 0 && boxes.every((b) => b.checked);
}
document.addEventListener("change", (event) => {
  if (event.target.id === "select-all") {
    $$(".select-item").forEach((box) => { box.checked = event.target.checked; });
  }
  if (event.target.matches(".select-item, #select-all")) syncSelection();
});
document.addEventListener("click", (event) => {
  if (event.target.id === "delete-selected") openDelete(selected());
  if (event.target.id === "clear-selection") { $$(".select-item").forEach((b) => { b.checked = false; }); syncSelection(); }
});
document.addEventListener("htmx:afterSwap", syncSelection);

// --- data panel: tabs, width, collapse --------------------------------------------------------
function setPanel(size) {
  if (!app) return;
  app.dataset.panel = size;
  localStorage.setItem("cryovault.panel", size);
  const show = $("#show-panel");
  if (show) show.hidden = size !== "collapsed";
}
$$(".size").forEach((button) => button.addEventListener("click", () => setPanel(button.dataset.size)));
$("#show-panel")?.addEventListener("click", () => setPanel(localStorage.getItem("cryovault.panel.open") || "third"));
if ($("#datapanel")) setPanel(localStorage.getItem("cryovault.panel") || "third");
$$(".size").forEach((b) => b.addEventListener("click", () => { if (b.dataset.size !== "collapsed") localStorage.setItem("cryovault.panel.open", b.dataset.size); }));

$$(".tab").forEach((tab) => tab.addEventListener("click", () => {
  $$(".tab").forEach((t) => { t.classList.toggle("active", t === tab); t.setAttribute("aria-selected", t === tab); });
  $$("[data-tab-body]").forEach((body) => { body.hidden = body.dataset.tabBody !== tab.dataset.tab; });
  const body = $(`[data-tab-body="${tab.dataset.tab}"]`);
  if (body && window.htmx) window.htmx.trigger(body, "load-sharing");
}));

// --- explorer: hide, sort, thumbnails ---------------------------------------------------------
function setExplorer(visible) {
  if (!app || !$("#explorer")) return;
  app.classList.toggle("no-explorer", !visible);
  $("#show-explorer").hidden = visible;
  localStorage.setItem("cryovault.explorer", visible ? "shown" : "hidden");
}
$("#hide-explorer")?.addEventListener("click", () => setExplorer(false));
$("#show-explorer")?.addEventListener("click", () => setExplorer(true));
if ($("#explorer")) setExplorer(localStorage.getItem("cryovault.explorer") !== "hidden");

const treeSort = $("#tree-sort");
function loadTree() {
  const [sort, order] = (treeSort.value || "name:asc").split(":");
  const tree = $("#tree");
  tree.setAttribute("hx-get", `/ui/tree?sort=${sort}&order=${order}`);
  window.htmx?.process(tree);
  window.htmx?.trigger(document.body, "tree-reload");
}
if (treeSort) {
  treeSort.value = localStorage.getItem("cryovault.treeSort") || "name:asc";
  if (treeSort.value !== "name:asc") document.addEventListener("DOMContentLoaded", loadTree);
  treeSort.addEventListener("change", () => { localStorage.setItem("cryovault.treeSort", treeSort.value); loadTree(); });
}
const thumbs = $("#tree-thumbs");
function setThumbs(on) {
  $("#tree")?.classList.toggle("thumbs", on);
  thumbs?.setAttribute("aria-pressed", String(on));
  localStorage.setItem("cryovault.treeThumbs", on ? "1" : "0");
}
thumbs?.addEventListener("click", () => setThumbs(thumbs.getAttribute("aria-pressed") !== "true"));
if (thumbs) setThumbs(localStorage.getItem("cryovault.treeThumbs") === "1");

// --- keyboard ---------------------------------------------------------------------------------
document.addEventListener("keydown", (event) => {
  const field = event.target.closest("input, textarea, select, [contenteditable]");
  const typing = (field && !["checkbox", "radio"].includes(field.type)) || document.querySelector("dialog[open]");
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "n" && $("#add-element")) { event.preventDefault(); openDialog("add-dialog"); }
  else if (event.key === "r" && $("#rename-current")) { event.preventDefault(); $("#rename-current").click(); }
  else if (event.key === "Delete" && selected().length && !$("#delete-selected").hidden) { event.preventDefault(); openDelete(selected()); }
  else if (event.key === "e" && $("#explorer")) { setExplorer(app.classList.contains("no-explorer")); }
  else if (event.key === "p" && $("#datapanel")) { setPanel(app.dataset.panel === "collapsed" ? (localStorage.getItem("cryovault.panel.open") || "third") : "collapsed"); }
});

// --- metadata panel (MD-2, MD-3): filter, add/edit dialog with units following the quantity --
document.addEventListener("input", (event) => {
  if (event.target.id !== "metadata-filter") return;
  const needle = event.target.value.trim().toLowerCase();
  let shown = 0;
  $$("[data-meta-group]").forEach((group) => {
    let inGroup = 0;
    $$("[data-meta-row]", group).forEach((row) => {
      const on = !needle || row.dataset.search.includes(needle);
      row.hidden = !on;
      if (on) inGroup += 1;
    });
    group.hidden = inGroup === 0;
    shown += inGroup;
  });
  const none = $("#metadata-no-match");
  if (none) none.hidden = !needle || shown > 0;
});

function quantityUnits() {
  const data = $("#quantities-data");
  return data ? JSON.parse(data.textContent) : {};
}
function fillUnits(selected) {
  const quantity = $("#metadata-quantity").value;
  const unit = $("#metadata-unit");
  const units = quantityUnits()[quantity] || [];
  unit.replaceChildren(...(units.length ? units : [{ name: "", symbol: "—" }]).map((u) => {
    const option = document.createElement("option");
    option.value = u.name; option.textContent = u.symbol === u.name ? u.name : `${u.symbol} (${u.name})`;
    return option;
  }));
  unit.disabled = units.length === 0;
  if (selected) unit.value = selected;
}
function syncValueType() {
  const type = $("#metadata-type").value;
  const value = $("#metadata-value");
  const bool = $("#metadata-bool");
  const numeric = type === "double" || type === "integer";
  $("#metadata-unit-fields").hidden = !numeric;
  $("#metadata-quantity").disabled = !numeric;
  if (!numeric) { $("#metadata-unit").disabled = true; } else { fillUnits($("#metadata-unit").value); }
  bool.hidden = type !== "boolean"; bool.disabled = type !== "boolean";
  value.hidden = type === "boolean"; value.disabled = type === "boolean";
  if (type === "boolean") { bool.name = "value"; value.removeAttribute("name"); } else { value.name = "value"; bool.removeAttribute("name"); }
  value.type = type === "date" ? "date" : "text";
  value.inputMode = type === "integer" ? "numeric" : type === "double" ? "decimal" : "text";
  value.placeholder = { double: "e.g. 1.5 or 2e-3", integer: "e.g. 42", date: "YYYY-MM-DD", string: "" }[type] || "";
}
let editing = null;
function openMetadata(entry) {
  const form = $("#metadata-form");
  if (!form) return;
  editing = entry;
  form.reset();
  form.setAttribute("hx-post", entry ? `${form.dataset.addUrl}/${entry.id}` : form.dataset.addUrl);
  window.htmx?.process(form);
  $("#metadata-title").textContent = entry ? `Edit ${entry.name}` : "Add metadata";
  $("#metadata-save").textContent = entry ? "Save" : "Add";
  $("#metadata-name").value = entry ? entry.name : "";
  $("#metadata-type").value = entry ? entry.type : "string";
  $("#metadata-quantity").value = entry ? entry.quantity : "";
  fillUnits(entry ? entry.unit : "");
  syncValueType();
  if (entry) {
    if (entry.type === "boolean") $("#metadata-bool").value = entry.value; else $("#metadata-value").value = entry.value;
  }
  $("#metadata-convert").value = "";
  $("#metadata-convert-hint").hidden = !(entry && entry.unit);
  openDialog("metadata-dialog");
}
document.addEventListener("click", (event) => {
  if (event.target.closest("[data-metadata-add]")) openMetadata(null);
  const edit = event.target.closest("[data-metadata-edit]");
  if (edit) openMetadata(JSON.parse(edit.dataset.metadataEdit));
  const noteEdit = event.target.closest("[data-note-edit]");
  if (noteEdit) {
    const note = noteEdit.closest(".note");
    $(".note-edit", note).hidden = false; $(".note-body", note).hidden = true;
    $(".note-edit textarea", note).focus();
  }
  const noteCancel = event.target.closest("[data-note-cancel]");
  if (noteCancel) {
    const note = noteCancel.closest(".note");
    $(".note-edit", note).hidden = true; $(".note-body", note).hidden = false;
  }
});
document.addEventListener("change", (event) => {
  if (event.target.id === "metadata-type") syncValueType();
  if (event.target.id === "metadata-quantity") fillUnits("");
  if (event.target.id === "metadata-name") {
    // An existing name brings its type along.
    const option = $$("#metadata-names option").find((o) => o.value === event.target.value);
    if (option && !editing) { $("#metadata-type").value = option.dataset.type; syncValueType(); }
  }
});
// Editing: a changed unit with the value left as it was converts the value (same physical value).
document.addEventListener("htmx:configRequest", (event) => {
  if (event.detail.elt.id !== "metadata-form" || !editing) return;
  const params = event.detail.parameters;
  const unitChanged = editing.unit && params.unit && params.unit !== editing.unit;
  const sameValue = String(params.value ?? "") === String(editing.value);
  const sameQuantity = (params.quantity || "") === editing.quantity;
  if (unitChanged && sameValue && sameQuantity && params.value_type === editing.type) params.convert = "1";
});
// Ctrl/Cmd+Enter in a note saves it.
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.matches("#note-body, .note-edit textarea")) {
    event.preventDefault();
    event.target.form.requestSubmit();
  }
});

// Export dialog: show where the export will be as the folder is typed.
const exportFolder = $("#export-folder");
exportFolder?.addEventListener("input", () => {
  const where = $("#export-where");
  const folder = exportFolder.value.trim().replace(/^\/+|\/+$/g, "");
  const base = where.dataset.public ? `${where.dataset.public.replace(/\/+$/, "")}/` : "";
  where.textContent = `${base}${folder ? `${folder}/` : ""}${where.dataset.name}_<date-time>`;
});

// Marks the page as interactive (keyboard shortcuts and dialogs wired): browser tests wait for it.
document.body.dataset.ready = "1";
