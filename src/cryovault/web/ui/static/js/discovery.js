// Discovery viewer (SPA-8): atlases → grid squares → foil holes/acquisitions → micrograph, on a
// zoomable Deep Zoom image (OpenSeadragon) with markers, a hierarchy, links, a scale bar and a
// ruler. `ImageStage` is also used by the run view's micrograph page (run_view.js).
const $ = (sel, root = document) => root.querySelector(sel);

export async function getJSON(url, options = {}) {
  const response = await fetch(url, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// --- lengths --------------------------------------------------------------------------------
export function formatDistance(angstrom) {
  const nm = angstrom / 10;
  if (nm < 1) return `${angstrom.toPrecision(3)} Å`;
  if (nm < 1000) return `${nm.toPrecision(3)} nm`;
  return `${(nm / 1000).toPrecision(3)} µm`;
}
function niceLength(angstrom) {
  const exponent = Math.floor(Math.log10(angstrom));
  const base = angstrom / 10 ** exponent;
  return (base >= 5 ? 5 : base >= 2 ? 2 : 1) * 10 ** exponent;
}
function formatScale(angstrom) {
  if (angstrom >= 1e4) return `${+(angstrom / 1e4).toPrecision(3)} µm`;
  if (angstrom >= 10) return `${+(angstrom / 10).toPrecision(3)} nm`;
  return `${+angstrom.toPrecision(3)} Å`;
}

// --- the image stage --------------------------------------------------------------------------
export class ImageStage {
  /** box: the .image-viewer element holding #osd, .scalebar, .viewer-status (and a ruler
   * readout when given). */
  constructor(box, { readout = null } = {}) {
    this.box = box;
    this.status = $(".viewer-status", box);
    this.scalebar = $(".scalebar", box);
    this.readout = readout;
    this.viewer = null;
    this.pixelSizeAngstrom = null; // of the displayed image
    this.size = null; // displayed image {width, height}
    this.markers = [];
    this.ruler = { on: false, points: [], svg: null };
    this.generation = 0;
  }

  ensureViewer() {
    if (this.viewer) return this.viewer;
    this.viewer = window.OpenSeadragon({
      element: $(".osd", this.box), prefixUrl: "/static/vendor/openseadragon-images/",
      drawer: "canvas", showNavigationControl: false, showNavigator: true,
      navigatorPosition: "BOTTOM_RIGHT", maxZoomPixelRatio: 8, visibilityRatio: 0.5,
      crossOriginPolicy: false, gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
    });
    this.viewer.addHandler("animation", () => this.updateScaleBar());
    this.viewer.addHandler("open", () => this.updateScaleBar());
    this.viewer.addHandler("tile-drawn", () => {
      this.status.hidden = true;
      this.box.dataset.ready = "1";
    });
    this.viewer.addHandler("open-failed", (e) => this.fail(e.message || "the tiles could not be loaded"));
    this.viewer.addHandler("canvas-click", (e) => {
      if (!this.ruler.on || !e.quick) return;
      e.preventDefaultAction = true;
      const point = this.viewer.viewport.viewerElementToImageCoordinates(e.position);
      this.addRulerPoint(point.x, point.y);
    });
    return this.viewer;
  }

  fail(message) {
    this.status.hidden = false;
    this.status.classList.add("viewer-problem");
    this.status.setAttribute("role", "alert");
    this.status.textContent = `Cannot show this image: ${message}`;
    this.box.dataset.ready = "error";
  }

  /** Open a run file's image; resolves when it is opened. `pixelSizeAngstrom` is that of the
   * displayed image (null when unknown). */
  async show(fileId, { pixelSizeAngstrom = null, originalWidthPx = null, bin = null } = {}) {
    const generation = ++this.generation;
    this.box.dataset.ready = "";
    this.status.hidden = false;
    this.status.classList.remove("viewer-problem");
    this.status.removeAttribute("role");
    this.status.textContent = "Preparing the image…";
    const preview = await getJSON(`/api/v1/run-files/${fileId}/preview`);
    if (generation !== this.generation) return null; // the user moved on
    this.size = { width: preview.width, height: preview.height };
    if (pixelSizeAngstrom) this.pixelSizeAngstrom = pixelSizeAngstrom;
    else this.pixelSizeAngstrom = null;
    this.scaleFromOriginal = { originalWidthPx, bin };
    const viewer = this.ensureViewer();
    this.clearMarkers();
    this.clearRuler();
    const opened = new Promise((resolve, reject) => {
      const ok = () => { viewer.removeHandler("open-failed", bad); resolve(); };
      const bad = (e) => { viewer.removeHandler("open", ok); reject(new Error(e.message || "the image could not be opened")); };
      viewer.addOnceHandler("open", ok);
      viewer.addOnceHandler("open-failed", bad);
    });
    viewer.open({
      width: preview.width, height: preview.height, tileSize: preview.tile_size, tileOverlap: 0,
      minLevel: 0, maxLevel: preview.max_level,
      getTileUrl: (level, x, y) => preview.tile_url.replace("{level}", level).replace("{col}", x).replace("{row}", y),
    });
    await opened;
    this.box.dataset.file = fileId;
    return preview;
  }

  updateScaleBar() {
    const bar = this.scalebar;
    if (!bar) return;
    if (!this.pixelSizeAngstrom || !this.viewer || !this.viewer.world.getItemCount()) { bar.hidden = true; return; }
    const viewport = this.viewer.viewport;
    const screenPerImage = viewport.viewportToImageZoom(viewport.getZoom(true));
    const angstromPerScreen = this.pixelSizeAngstrom / screenPerImage;
    const length = niceLength(angstromPerScreen * 120);
    bar.hidden = false;
    bar.querySelector(".bar").style.width = `${length / angstromPerScreen}px`;
    bar.querySelector(".label").textContent = formatScale(length);
  }

  // markers: {x, y} in displayed-image pixels; diameter (px of the displayed image) makes a
  // ring sized with the image, otherwise a fixed-size dot.
  setMarkers(markers) {
    this.clearMarkers();
    const viewer = this.viewer;
    for (const marker of markers) {
      const node = el("button", {
        type: "button", class: `marker ${marker.className || ""}`, title: marker.title,
        "aria-label": marker.title, "data-id": marker.id,
      });
      node.addEventListener("pointerdown", (e) => e.stopPropagation());
      node.addEventListener("click", (e) => { e.stopPropagation(); marker.onClick?.(); });
      if (marker.diameter) {
        const d = marker.diameter;
        const rect = viewer.viewport.imageToViewportRectangle(marker.x - d / 2, marker.y - d / 2, d, d);
        viewer.addOverlay({ element: node, location: rect, checkResize: false });
      } else {
        const point = viewer.viewport.imageToViewportCoordinates(marker.x, marker.y);
        viewer.addOverlay({ element: node, location: point, placement: window.OpenSeadragon.Placement.CENTER, checkResize: false });
      }
      this.markers.push(node);
    }
  }

  clearMarkers() {
    if (this.viewer) for (const node of this.markers) this.viewer.removeOverlay(node);
    this.markers = [];
  }

  zoomBy(factor) { this.viewer?.viewport.zoomBy(factor); this.viewer?.viewport.applyConstraints(); }
  recenter() { this.viewer?.viewport.goHome(); }
  panTo(x, y, zoomFactor = 4) {
    if (!this.viewer) return;
    const point = this.viewer.viewport.imageToViewportCoordinates(x, y);
    this.viewer.viewport.panTo(point);
    this.viewer.viewport.zoomTo(this.viewer.viewport.getHomeZoom() * zoomFactor);
  }

  // --- ruler: click two points; the distance from the displayed image's pixel size ----------
  setRuler(on) {
    this.ruler.on = on;
    this.box.classList.toggle("ruler-on", on);
    if (!on) this.clearRuler();
    else this.say("Ruler: click two points on the image.");
  }
  clearRuler() {
    this.ruler.points = [];
    if (this.ruler.svg && this.viewer) this.viewer.removeOverlay(this.ruler.svg);
    this.ruler.svg = null;
    if (this.ruler.on) this.say("Ruler: click two points on the image.");
    else this.say("");
  }
  say(text) {
    if (!this.readout) return;
    this.readout.textContent = text;
    this.readout.hidden = !text;
  }
  addRulerPoint(x, y) {
    if (this.ruler.points.length >= 2) this.clearRuler();
    this.ruler.points.push({ x, y });
    this.drawRuler();
    if (this.ruler.points.length < 2) { this.say("Ruler: click the second point."); return; }
    const [a, b] = this.ruler.points;
    const pixels = Math.hypot(b.x - a.x, b.y - a.y);
    const text = this.pixelSizeAngstrom
      ? `Distance: ${formatDistance(pixels * this.pixelSizeAngstrom)} (${pixels.toFixed(0)} px)`
      : `Distance: ${pixels.toFixed(0)} px (the pixel size of this image is not known)`;
    this.say(text);
    if (this.readout) this.readout.dataset.distanceAngstrom = this.pixelSizeAngstrom ? String(pixels * this.pixelSizeAngstrom) : "";
  }
  drawRuler() {
    const { width, height } = this.size;
    const ns = "http://www.w3.org/2000/svg";
    if (!this.ruler.svg) {
      const svg = document.createElementNS(ns, "svg");
      svg.setAttribute("class", "ruler-layer");
      svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
      svg.setAttribute("preserveAspectRatio", "none");
      this.viewer.addOverlay({ element: svg, location: this.viewer.viewport.imageToViewportRectangle(0, 0, width, height) });
      this.ruler.svg = svg;
    }
    const svg = this.ruler.svg;
    svg.replaceChildren();
    const r = Math.max(width, height) / 250;
    const [a, b] = this.ruler.points;
    if (a && b) {
      const line = document.createElementNS(ns, "line");
      for (const [k, v] of Object.entries({ x1: a.x, y1: a.y, x2: b.x, y2: b.y })) line.setAttribute(k, v);
      svg.append(line);
    }
    for (const p of this.ruler.points) {
      const dot = document.createElementNS(ns, "circle");
      dot.setAttribute("cx", p.x); dot.setAttribute("cy", p.y); dot.setAttribute("r", r);
      svg.append(dot);
    }
  }
}

// --- the Discovery page ---------------------------------------------------------------------
const STATE_TEXT = { completed: "terminated", in_progress: "in progress", not_imaged: "not imaged" };
const STATUS_TEXT = { completed: "completed", in_progress: "in progress", failed: "failed" };

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

function startDiscovery(root) {
  const elementId = root.dataset.element;
  const kind = root.dataset.kind;
  const box = $("#stage");
  const stage = new ImageStage(box, { readout: $("#ruler-readout") });
  const state = { sort: "date", order: "desc", atlases: [], atlas: null, square: null, micrograph: null };
  const params = new URLSearchParams(location.search);

  function remember() {
    const query = new URLSearchParams();
    if (state.atlas) query.set("atlas", state.atlas.id);
    if (state.square) query.set("square", state.square.id);
    if (state.micrograph) query.set("micrograph", state.micrograph.id);
    history.replaceState(null, "", `${location.pathname}${query.toString() ? `?${query}` : ""}`);
  }

  function problem(message) {
    const slot = $("#discovery-problem");
    slot.textContent = message;
    slot.hidden = !message;
  }

  // hierarchy: atlas › square › micrograph
  function drawHierarchy() {
    const nav = $("#hierarchy");
    const crumbs = [];
    if (state.atlas) crumbs.push(el("button", { type: "button", class: "link crumb", id: "crumb-atlas", text: `Atlas ${state.atlas.name}`, onclick: () => showAtlas(state.atlas.id) }));
    if (state.square) crumbs.push(el("button", { type: "button", class: "link crumb", id: "crumb-square", text: `Grid square ${state.square.epu_id}`, onclick: () => showSquare(state.square.id) }));
    if (state.micrograph) crumbs.push(el("span", { class: "crumb current", id: "crumb-micrograph", text: state.micrograph.name }));
    if (!crumbs.length) { nav.replaceChildren(el("span", { class: "muted", text: "Choose an atlas." })); return; }
    crumbs[crumbs.length - 1].setAttribute("aria-current", "page");
    nav.replaceChildren(...crumbs.flatMap((c, i) => (i ? [el("span", { class: "sep", "aria-hidden": "true", text: "›" }), c] : [c])));
  }

  function drawLinks(runs) {
    const list = $("#link-panel");
    list.replaceChildren(...runs.map((run) => el("li", {}, el("a", { href: `/runs/${run.id}`, class: "run-link", text: `EPU run view: ${run.name}` }))));
    if (state.micrograph) {
      list.prepend(el("li", {}, el("a", { href: `/runs/${state.micrograph.dataset_id}/micrographs/${state.micrograph.id}`, id: "open-micrograph-page", text: "This micrograph in the run view" })));
    }
  }

  function legend(level) {
    const box = $("#legend");
    box.hidden = !level;
    for (const item of box.querySelectorAll("[data-for]")) item.hidden = item.dataset.for !== level;
  }

  function details(title, rows, extra = []) {
    const side = $("#selection-details");
    side.replaceChildren(
      el("h3", { class: "selection-title", text: title }),
      el("dl", { class: "meta", id: "selection-facts" }, rows.flatMap(([label, value]) => [el("dt", { text: label }), el("dd", { text: value })])),
      ...extra,
    );
  }

  // --- atlas table --------------------------------------------------------------------------
  async function loadAtlases() {
    const base = kind === "workflow" ? "workflows" : "datasets";
    const body = await getJSON(`/api/v1/${base}/${elementId}/atlases?sort=${state.sort}&order=${state.order}`);
    state.atlases = body.items;
    const tbody = $("#atlas-table tbody");
    tbody.replaceChildren(...body.items.map((atlas) => el("tr", { "data-id": atlas.id, class: atlas.deleted ? "deleted" : "" },
      el("td", {}, el("button", { type: "button", class: "link atlas-open", text: atlas.name, onclick: () => showAtlas(atlas.id) }),
        atlas.deleted ? el("span", { class: "badge", text: "data deleted" }) : null),
      el("td", { text: when(atlas.acquired_at || atlas.created_at) }),
      el("td", { text: atlas.cassette_slot ?? "—" }),
      el("td", {}, atlas.runs.map((run, i) => [i ? ", " : "", el("a", { href: `/runs/${run.id}`, text: run.name })])),
    )));
    $("#atlas-empty").hidden = body.items.length > 0;
    for (const button of document.querySelectorAll("#atlas-table [data-sort]")) {
      const active = button.dataset.sort === state.sort;
      button.closest("th").setAttribute("aria-sort", active ? (state.order === "asc" ? "ascending" : "descending") : "none");
    }
    markActiveAtlas();
    return body.items;
  }
  function markActiveAtlas() {
    for (const row of document.querySelectorAll("#atlas-table tbody tr")) {
      row.classList.toggle("active", !!state.atlas && state.atlas_ids?.includes(row.dataset.id));
    }
  }
  for (const button of document.querySelectorAll("#atlas-table [data-sort]")) {
    button.addEventListener("click", () => {
      if (state.sort === button.dataset.sort) state.order = state.order === "asc" ? "desc" : "asc";
      else { state.sort = button.dataset.sort; state.order = button.dataset.sort === "date" ? "desc" : "asc"; }
      loadAtlases().catch((e) => problem(e.message));
    });
  }

  // --- levels ---------------------------------------------------------------------------------
  function showStage(visible, emptyContent = null) {
    $("#stage-wrap").hidden = !visible;
    const empty = $("#stage-empty");
    empty.hidden = visible;
    if (!visible) empty.replaceChildren(...(emptyContent || []));
  }

  function squareButtons(squares) {
    return el("ul", { class: "square-list" }, squares.map((s) => el("li", {},
      el("button", { type: "button", class: `link square-open state-${s.state}`, "data-id": s.id, text: `Grid square ${s.epu_id}`, onclick: () => showSquare(s.id) }),
      el("small", { class: "muted", text: ` ${STATE_TEXT[s.state]} · ${s.micrograph_count} micrographs` }))));
  }

  async function showAtlas(atlasId) {
    problem("");
    const atlas = await getJSON(`/api/v1/atlases/${atlasId}`);
    state.atlas = atlas;
    state.atlas_ids = state.atlases.find((a) => a.atlas_ids.includes(atlas.id))?.atlas_ids || [atlas.id];
    state.square = null;
    state.micrograph = null;
    root.dataset.level = "atlas";
    markActiveAtlas();
    drawHierarchy();
    remember();
    const rows = [["Created", when(atlas.acquired_at || atlas.created_at)], ["Cassette slot", atlas.cassette_slot ?? "—"],
      ["Pixel size", atlas.pixel_size_angstrom ? formatDistance(atlas.pixel_size_angstrom) : "unknown"],
      ["Grid squares", `${atlas.grid_squares.length}: ${atlas.counts.completed} terminated, ${atlas.counts.in_progress} in progress, ${atlas.counts.not_imaged} not imaged`],
      ["Runs", atlas.runs.map((r) => r.name).join(", ")]];
    const extra = [];
    if (atlas.can_delete && !atlas.deleted) {
      extra.push(el("button", { type: "button", class: "secondary danger-text", id: "delete-atlas", text: "Delete atlas data", onclick: () => $("#delete-atlas-dialog").showModal() }));
    }
    if (atlas.deleted) extra.push(el("p", { class: "notice", id: "atlas-deleted", text: "The atlas data (images and tiles) was deleted. Grid squares and micrographs are kept." }));
    details(`Atlas ${atlas.name}`, rows, extra);
    drawLinks(atlas.runs);
    legend("atlas");
    if (!atlas.image) {
      const why = atlas.deleted ? "The atlas image was deleted." : "The atlas image has not arrived yet.";
      showStage(false, [el("p", { class: "muted", text: `${why} Its grid squares:` }), squareButtons(atlas.grid_squares)]);
      return;
    }
    showStage(true);
    await stage.show(atlas.image.file_id, { pixelSizeAngstrom: atlas.image.pixel_size_angstrom });
    if (state.atlas !== atlas) return;
    const bin = atlas.image.bin || 1;
    stage.setMarkers(atlas.grid_squares.map((s) => ({
      id: s.id, x: s.x_px / bin, y: s.y_px / bin, className: `square state-${s.state}`,
      title: `Grid square ${s.epu_id}: ${STATE_TEXT[s.state]}, ${s.micrograph_count} micrographs`,
      onClick: () => showSquare(s.id),
    })));
    root.dataset.ready = "atlas";
  }

  async function showSquare(squareId, { keepView = false } = {}) {
    problem("");
    const square = await getJSON(`/api/v1/grid-squares/${squareId}`);
    if (!state.atlas && square.atlas_id) {
      state.atlas = await getJSON(`/api/v1/atlases/${square.atlas_id}`);
    }
    state.square = square;
    state.micrograph = null;
    root.dataset.level = "square";
    legend("square");
    drawHierarchy();
    remember();
    const counts = square.counts;
    details(`Grid square ${square.epu_id}`, [
      ["State", `${STATE_TEXT[square.state]}${square.epu_state ? ` (EPU: ${square.epu_state})` : ""}`],
      ["Run", square.dataset_name],
      ["Acquired", when(square.acquired_at)],
      ["Pixel size", square.pixel_size_angstrom ? formatDistance(square.pixel_size_angstrom) : "unknown"],
      ["Foil holes", String(square.foil_holes.length)],
      ["Acquisitions", `${square.acquisitions.length} (${counts.completed || 0} completed, ${counts.in_progress || 0} in progress, ${counts.failed || 0} failed)`],
    ], [el("h3", { text: "Acquisitions" }), el("ul", { class: "acquisition-list", id: "acquisition-list" }, square.acquisitions.map((a) => el("li", {},
      el("span", { class: `dot dot-${a.status}`, title: a.problem || STATUS_TEXT[a.status] }),
      el("button", { type: "button", class: "link", text: a.name, onclick: () => showMicrograph(square.dataset_id, a.id) }))))]);
    drawLinks([{ id: square.dataset_id, name: square.dataset_name }]);
    if (!square.image) {
      showStage(false, [el("p", { class: "muted", text: "The grid square's image has not arrived yet." })]);
      return;
    }
    showStage(true);
    await stage.show(square.image.file_id, { pixelSizeAngstrom: square.image.pixel_size_angstrom });
    if (state.square !== square) return;
    const bin = square.image.bin || 1;
    const holes = square.foil_holes.filter((h) => h.x_px !== null && h.y_px !== null).map((h) => ({
      id: h.id, x: h.x_px / bin, y: h.y_px / bin, diameter: (h.diameter_px || 0) / bin || null,
      className: `hole${h.micrograph_count ? " has-data" : ""}${h.selected === false ? " unselected" : ""}`,
      title: `Foil hole ${h.epu_id}: ${h.micrograph_count} acquisitions`,
      onClick: () => {
        const first = square.acquisitions.find((a) => a.foil_hole_id === h.epu_id);
        if (first) showMicrograph(square.dataset_id, first.id);
      },
    }));
    const shots = square.acquisitions.filter((a) => a.x_px !== null).map((a) => ({
      id: a.id, x: a.x_px / bin, y: a.y_px / bin, className: `acquisition status-${a.status}`,
      title: `${a.name}: ${a.problem || STATUS_TEXT[a.status]}`, onClick: () => showMicrograph(square.dataset_id, a.id),
    }));
    stage.setMarkers([...holes, ...shots]);
    root.dataset.ready = "square";
  }

  async function showMicrograph(datasetId, micrographId) {
    problem("");
    const micrograph = await getJSON(`/api/v1/datasets/${datasetId}/micrographs/${micrographId}`);
    micrograph.dataset_id = datasetId;
    state.micrograph = micrograph;
    root.dataset.level = "micrograph";
    legend(null);
    drawHierarchy();
    remember();
    const md = micrograph.metadata || {};
    const rows = [["Status", micrograph.problem ? `${STATUS_TEXT[micrograph.status]}: ${micrograph.problem}` : STATUS_TEXT[micrograph.status]],
      ["Acquired", when(micrograph.acquired_at)], ["Foil hole", micrograph.foil_hole_id || "—"]];
    if (typeof md.defocus_target_angstrom === "number") rows.push(["Defocus target", `${(md.defocus_target_angstrom / 1e4).toFixed(2)} µm`]);
    if (typeof md.dose_e_per_angstrom2 === "number") rows.push(["Dose", `${md.dose_e_per_angstrom2.toPrecision(4)} e⁻/Å²`]);
    if (typeof md.pixel_size_angstrom === "number") rows.push(["Pixel size", `${md.pixel_size_angstrom.toPrecision(4)} Å`]);
    if (typeof md.exposure_time_s === "number") rows.push(["Exposure", `${md.exposure_time_s} s`]);
    details(micrograph.name, rows);
    drawLinks([{ id: datasetId, name: state.square?.dataset_name || "this run" }]);
    const copy = micrograph.files.find((f) => f.role === "downscaled" && f.integrity === "ok");
    if (!copy) {
      showStage(false, [el("p", { class: "muted", text: "The micrograph's image has not arrived yet." })]);
      return;
    }
    showStage(true);
    const preview = await stage.show(copy.id, {});
    if (state.micrograph !== micrograph || !preview) return;
    // The copy is binned by 4; with the original's width known, the exact ratio.
    const scale = md.width_px ? md.width_px / preview.width : 4;
    stage.pixelSizeAngstrom = typeof md.pixel_size_angstrom === "number" ? md.pixel_size_angstrom * scale : null;
    stage.updateScaleBar();
    root.dataset.ready = "micrograph";
  }

  // --- toolbar --------------------------------------------------------------------------------
  $("#zoom-in").addEventListener("click", () => stage.zoomBy(1.5));
  $("#zoom-out").addEventListener("click", () => stage.zoomBy(1 / 1.5));
  $("#recenter").addEventListener("click", () => stage.recenter());
  $("#fullscreen").addEventListener("click", () => {
    const wrap = $("#stage-wrap");
    if (document.fullscreenElement) document.exitFullscreen();
    else wrap.requestFullscreen?.().catch((e) => problem(`Full screen is not available: ${e.message}`));
  });
  const rulerButton = $("#ruler");
  rulerButton.addEventListener("click", () => {
    const on = rulerButton.getAttribute("aria-pressed") !== "true";
    rulerButton.setAttribute("aria-pressed", String(on));
    stage.setRuler(on);
  });

  // --- delete atlas data ----------------------------------------------------------------------
  $("#delete-atlas-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const dialog = $("#delete-atlas-dialog");
    const error = $("#delete-atlas-error");
    error.textContent = "";
    try {
      const result = await getJSON(`/api/v1/atlases/${state.atlas.id}/data`, { method: "DELETE" });
      dialog.close();
      await loadAtlases();
      await showAtlas(state.atlas.id);
      problem("");
      $("#discovery-message").textContent = `Atlas data deleted: ${result.files_removed} files.`;
    } catch (e) {
      error.textContent = e.message;
    }
  });

  async function start() {
    try {
      const atlases = await loadAtlases();
      const wanted = params.get("atlas");
      const first = atlases.find((a) => a.atlas_ids.includes(wanted)) || atlases.find((a) => !a.deleted) || atlases[0];
      if (first) await showAtlas(wanted && first.atlas_ids.includes(wanted) ? wanted : first.id);
      else { drawHierarchy(); showStage(false, [el("p", { class: "muted", text: "No atlas yet: it appears when the EPU session's atlas is registered." })]); }
      if (params.get("square")) await showSquare(params.get("square"));
      if (params.get("micrograph") && state.square) await showMicrograph(state.square.dataset_id, params.get("micrograph"));
    } catch (e) {
      problem(e.message);
    }
    document.body.dataset.discoveryReady = "1";
  }
  start();
}

const root = document.getElementById("discovery");
if (root) {
  if (window.OpenSeadragon) startDiscovery(root);
  else window.addEventListener("load", () => startDiscovery(root), { once: true });
}
