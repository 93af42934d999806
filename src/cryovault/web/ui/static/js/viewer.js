// Image viewer (WS-11): zoom/pan over a Deep Zoom pyramid (OpenSeadragon), contrast window with
// histogram, slice slider for stacks and volumes, scale bar from the pixel size in the header.
// The server builds a slice once (first a downscaled preview, tiles as the user zooms in).
const $ = (sel) => document.querySelector(sel);
const box = $("#image-viewer");
const fileId = box.dataset.file;
const status = $("#viewer-status");
const state = { info: null, preview: null, slice: 0, black: 0, white: 255, viewer: null, manual: false };

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

function fail(message) {
  status.hidden = false;
  status.classList.remove("muted");
  status.classList.add("viewer-problem");
  status.setAttribute("role", "alert");
  status.textContent = message.startsWith("cannot read") ? message : `Cannot show this image: ${message}`;
  document.body.dataset.viewerReady = "error";
}

// --- contrast: a linear map of the 8-bit display values, applied by an SVG filter ------------
function value8(v) {
  const p = state.preview;
  return p.lo + ((p.hi - p.lo) * v) / 255;
}
function formatValue(v) {
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : v.toPrecision(4);
}
function applyContrast() {
  const black = Math.min(state.black, state.white - 1);
  const slope = 255 / Math.max(1, state.white - black);
  const intercept = -black / Math.max(1, state.white - black);
  document.querySelectorAll("#contrast-filter feFuncR, #contrast-filter feFuncG, #contrast-filter feFuncB").forEach((f) => {
    f.setAttribute("slope", String(slope));
    f.setAttribute("intercept", String(intercept));
  });
  $("#black-point").value = state.black;
  $("#white-point").value = state.white;
  $("#black-value").textContent = formatValue(value8(state.black));
  $("#white-value").textContent = formatValue(value8(state.white));
  drawHistogram();
}
function drawHistogram() {
  const canvas = $("#histogram");
  const ctx = canvas.getContext("2d");
  const counts = state.preview.histogram;
  const max = Math.max(1, ...counts);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#e6ebf1";
  ctx.fillRect(state.black, 0, state.white - state.black, canvas.height);
  ctx.fillStyle = "#3b4a5c";
  counts.forEach((count, i) => {
    const h = Math.sqrt(count / max) * canvas.height;
    ctx.fillRect((i * canvas.width) / counts.length, canvas.height - h, Math.max(1, canvas.width / counts.length), h);
  });
}
$("#black-point").addEventListener("input", (e) => { state.manual = true; state.black = Math.min(Number(e.target.value), state.white - 1); applyContrast(); });
$("#white-point").addEventListener("input", (e) => { state.manual = true; state.white = Math.max(Number(e.target.value), state.black + 1); applyContrast(); });
$("#auto-contrast").addEventListener("click", () => { state.manual = false; state.black = 0; state.white = 255; applyContrast(); });

// --- scale bar ------------------------------------------------------------------------------
function niceLength(angstrom) {
  const exponent = Math.floor(Math.log10(angstrom));
  const base = angstrom / 10 ** exponent;
  const nice = base >= 5 ? 5 : base >= 2 ? 2 : 1;
  return nice * 10 ** exponent;
}
function formatLength(angstrom) {
  if (angstrom >= 1e4) return `${angstrom / 1e4} µm`;
  if (angstrom >= 10) return `${angstrom / 10} nm`;
  return `${angstrom} Å`;
}
function updateScaleBar() {
  const size = state.info.pixel_size_angstrom;
  const bar = $("#scalebar");
  if (!size || !state.viewer) { bar.hidden = true; return; }
  const viewport = state.viewer.viewport;
  const screenPerImage = viewport.viewportToImageZoom(viewport.getZoom(true)); // screen px per image px
  const angstromPerScreen = size / screenPerImage;
  const length = niceLength(angstromPerScreen * 120);
  bar.hidden = false;
  bar.querySelector(".bar").style.width = `${length / angstromPerScreen}px`;
  bar.querySelector(".label").textContent = formatLength(length);
}

// --- slices ---------------------------------------------------------------------------------
function tileSource(preview) {
  return {
    width: preview.width, height: preview.height, tileSize: preview.tile_size, tileOverlap: 0,
    minLevel: 0, maxLevel: preview.max_level,
    getTileUrl: (level, x, y) => preview.tile_url.replace("{level}", level).replace("{col}", x).replace("{row}", y),
  };
}
async function showSlice(index) {
  state.slice = index;
  status.hidden = false;
  status.textContent = `Preparing slice ${index + 1}…`;
  const preview = await getJSON(`/api/v1/files/${fileId}/preview?slice=${index}`);
  if (state.slice !== index) return; // the user moved on
  state.preview = preview;
  if (!state.manual) { state.black = 0; state.white = 255; }
  applyContrast();
  if (!state.viewer) {
    state.viewer = window.OpenSeadragon({
      element: $("#osd"), prefixUrl: "/static/vendor/openseadragon-images/", tileSources: tileSource(preview),
      drawer: "canvas", showNavigator: true, navigatorPosition: "BOTTOM_RIGHT", maxZoomPixelRatio: 8, visibilityRatio: 0.5,
      crossOriginPolicy: false, gestureSettingsMouse: { clickToZoom: false }, preserveViewport: true,
    });
    state.viewer.addHandler("animation", updateScaleBar);
    state.viewer.addHandler("open", () => { updateScaleBar(); });
    state.viewer.addHandler("tile-drawn", () => {
      status.hidden = true;
      document.body.dataset.viewerReady = "1";
    });
    state.viewer.addHandler("open-failed", (e) => fail(e.message || "the tiles could not be loaded"));
  } else {
    state.viewer.open(tileSource(preview));
  }
  // Only the image itself takes the contrast window, not the controls or the navigator.
  state.viewer.drawer.canvas.style.filter = "url(#contrast-filter)";
}

function details(info) {
  const list = $("#image-details");
  list.replaceChildren(...info.details.flatMap(([label, value]) => {
    const dt = document.createElement("dt"); dt.textContent = label;
    const dd = document.createElement("dd"); dd.textContent = value;
    return [dt, dd];
  }));
}

async function start() {
  try {
    state.info = await getJSON(`/api/v1/files/${fileId}/image`);
    details(state.info);
    if (state.info.n_slices > 1) {
      const slider = $("#slice");
      $("#slice-panel").hidden = false;
      $("#slice-label").textContent = { stack: "Image", volume: "Section", frames: "Frame" }[state.info.slice_kind] || "Slice";
      $("#slice-count").textContent = state.info.n_slices;
      slider.max = state.info.n_slices - 1;
      const initial = state.info.slice_kind === "volume" ? Math.floor(state.info.n_slices / 2) : 0;
      slider.value = initial;
      $("#slice-value").textContent = initial + 1;
      let timer = null;
      slider.addEventListener("input", () => {
        $("#slice-value").textContent = Number(slider.value) + 1;
        clearTimeout(timer);
        timer = setTimeout(() => showSlice(Number(slider.value)).catch((e) => fail(e.message)), 120);
      });
      await showSlice(initial);
    } else {
      await showSlice(0);
    }
  } catch (error) {
    fail(error.message);
  }
}

// OpenSeadragon is a classic script loaded with `defer`: wait for it.
if (window.OpenSeadragon) start();
else window.addEventListener("load", start, { once: true });
