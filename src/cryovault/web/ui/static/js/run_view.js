// EPU and Tomo run views (SPA-2, ET-1): list/cards (remembered), the errors filter, the live
// view's parameters, and the micrograph page's image viewer.
import { ImageStage } from "./discovery.js";

const $ = (sel, root = document) => root.querySelector(sel);
const VIEW_KEY = "cryovault.runView";
const MAX_WATCHED = 200;

const page = $("#run-page");
const list = $("#run-list");

// --- list or cards ----------------------------------------------------------------------------
function setView(view) {
  if (!list) return;
  list.classList.toggle("view-cards", view === "cards");
  list.classList.toggle("view-list", view !== "cards");
  for (const button of document.querySelectorAll(".run-tools [data-view]")) {
    button.setAttribute("aria-pressed", String(button.dataset.view === view));
  }
}
if (list) {
  setView(list.dataset.view || localStorage.getItem(VIEW_KEY) || "list");
  for (const button of document.querySelectorAll(".run-tools [data-view]")) {
    button.addEventListener("click", () => {
      localStorage.setItem(VIEW_KEY, button.dataset.view);
      setView(button.dataset.view);
    });
  }
}

// --- "Show only errors" ---------------------------------------------------------------------
const onlyErrors = $("#only-errors");
onlyErrors?.addEventListener("change", async () => {
  const status = onlyErrors.checked ? "failed" : "";
  list.dataset.status = status;
  const query = status ? `?status=${status}` : "";
  history.replaceState(null, "", `${location.pathname}${query}`);
  await window.htmx.ajax("GET", `/ui/runs/${page.dataset.run}/items${query}`, { target: "#run-list", swap: "innerHTML" });
});

// --- live view: what the poller sends -------------------------------------------------------
// tail/after: the page shows the run's last item (its cursor); watch: shown items that may
// still change (in progress, or without a thumbnail yet), with the stamp they were drawn at.
window.cryovaultRun = {
  liveParams() {
    const end = $("#run-end[data-after]");
    const watched = [...document.querySelectorAll("#run-items .run-item")]
      .filter((item) => item.dataset.status === "in_progress" || item.hasAttribute("data-no-thumb"))
      .slice(-MAX_WATCHED)
      .map((item) => `${item.id.slice(5)}.${item.dataset.stamp}`);
    return {
      status: list?.dataset.status || "",
      tail: end ? "true" : "false",
      after: end ? end.dataset.after : "",
      watch: watched.join(","),
    };
  },
};

// --- the micrograph page's image --------------------------------------------------------------
function startImage(box) {
  const images = JSON.parse(box.dataset.images);
  const stage = new ImageStage(box);
  async function show(index) {
    const image = images[index];
    try {
      const preview = await stage.show(image.file_id);
      if (!preview) return;
      // A displayed pixel covers original_width/width original pixels (else the copy's bin).
      const scale = image.original_width_px ? image.original_width_px / preview.width : image.bin;
      stage.pixelSizeAngstrom = image.pixel_size_angstrom && scale ? image.pixel_size_angstrom * scale : null;
      stage.updateScaleBar();
      document.body.dataset.viewerReady = "1";
    } catch (error) {
      stage.fail(error.message);
    }
    for (const button of document.querySelectorAll(".image-choice [data-image]")) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.image) === index));
    }
  }
  for (const button of document.querySelectorAll(".image-choice [data-image]")) {
    button.addEventListener("click", () => show(Number(button.dataset.image)));
  }
  show(0);
}
const imageBox = $("#run-image");
if (imageBox) {
  if (window.OpenSeadragon) startImage(imageBox);
  else window.addEventListener("load", () => startImage(imageBox), { once: true });
}

// Keyboard: ← → between acquisitions on the micrograph page.
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, textarea, select, [contenteditable], .osd") || event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.key === "ArrowLeft" && $("#previous-item")) location.assign($("#previous-item").href);
  if (event.key === "ArrowRight" && $("#next-item")) location.assign($("#next-item").href);
});
