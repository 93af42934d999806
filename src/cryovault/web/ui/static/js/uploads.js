// Uploads (WS-10): drag-and-drop or chooser, several files at once, a progress bar and a
// cancel button per file. Each file goes through the resumable upload API in chunks, so a
// dropped connection resumes from the server's offset instead of starting again.
const $ = (sel, root = document) => root.querySelector(sel);
const CHUNK_BYTES = 16 * 1024 * 1024;
const RETRIES = 5;

function humanBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function queue() {
  let box = $("#upload-queue");
  if (box) return box;
  box = document.createElement("section");
  box.id = "upload-queue";
  box.className = "upload-queue";
  box.setAttribute("aria-label", "Uploads");
  box.innerHTML = `<header><h2>Uploads</h2><button type="button" class="icon" id="upload-queue-close" title="Hide finished uploads" aria-label="Hide finished uploads">×</button></header><ul></ul>`;
  document.body.append(box);
  box.querySelector("#upload-queue-close").addEventListener("click", () => {
    box.querySelectorAll("li.done, li.failed, li.cancelled").forEach((li) => li.remove());
    if (!box.querySelector("li")) box.remove();
  });
  return box;
}

async function api(method, url, body, headers = {}) {
  const response = await fetch(url, { method, body, headers, credentials: "same-origin" });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const error = new Error((data && data.detail) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

// One chunk with XMLHttpRequest: fetch() cannot report upload progress.
function sendChunk(upload, offset, blob, onProgress, item) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    item.xhr = xhr;
    xhr.open("PATCH", `/api/v1/uploads/${upload.id}`);
    xhr.setRequestHeader("Upload-Offset", String(offset));
    xhr.setRequestHeader("Content-Type", "application/offset+octet-stream");
    xhr.upload.onprogress = (event) => onProgress(offset + event.loaded);
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else {
        const error = new Error((data && data.detail) || `${xhr.status} ${xhr.statusText}`);
        error.status = xhr.status;
        reject(error);
      }
    };
    xhr.onerror = () => { const e = new Error("connection lost"); e.retry = true; reject(e); };
    xhr.onabort = () => { const e = new Error("cancelled"); e.cancelled = true; reject(e); };
    xhr.send(blob);
  });
}

function row(file) {
  const li = document.createElement("li");
  li.className = "uploading";
  li.innerHTML = `<div class="upload-line"><span class="upload-name"></span><small class="upload-state muted">waiting</small>
    <button type="button" class="icon upload-cancel" title="Cancel this upload">×</button></div>
    <progress max="100" value="0"></progress>`;
  li.querySelector(".upload-name").textContent = file.name;
  li.querySelector(".upload-cancel").setAttribute("aria-label", `Cancel the upload of ${file.name}`);
  li.querySelector("progress").setAttribute("aria-label", `Upload of ${file.name}`);
  queue().querySelector("ul").append(li);
  return li;
}

async function uploadOne(parentId, file, li) {
  const item = { cancelled: false, xhr: null, upload: null };
  const state = li.querySelector(".upload-state");
  const bar = li.querySelector("progress");
  const started = performance.now();
  const show = (sent) => {
    const pct = file.size ? Math.floor((sent / file.size) * 100) : 100;
    bar.value = pct;
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0.5 ? ` · ${humanBytes(sent / seconds)}/s` : "";
    state.textContent = `${pct}% of ${humanBytes(file.size)}${rate}`;
  };
  li.querySelector(".upload-cancel").addEventListener("click", async () => {
    item.cancelled = true;
    item.xhr?.abort();
    if (item.upload) { try { await api("DELETE", `/api/v1/uploads/${item.upload.id}`); } catch { /* gone already */ } }
    li.className = "cancelled";
    state.textContent = "cancelled";
  });
  try {
    item.upload = await api("POST", "/api/v1/uploads", JSON.stringify({ parent_id: parentId, name: file.name, size: file.size }),
      { "Content-Type": "application/json" });
    let result = item.upload;
    let offset = 0;
    let failures = 0;
    show(0);
    while (!result.file && !item.cancelled) {
      try {
        result = await sendChunk(item.upload, offset, file.slice(offset, offset + CHUNK_BYTES), show, item);
        offset = result.offset;
        failures = 0;
      } catch (error) {
        if (item.cancelled || error.cancelled) return;
        if (!(error.retry || error.status === 409) || ++failures > RETRIES) throw error;
        state.textContent = "connection lost, resuming…";
        await new Promise((r) => setTimeout(r, 1000 * failures));
        result = await api("GET", `/api/v1/uploads/${item.upload.id}`); // where to resume
        offset = result.offset;
      }
    }
    if (item.cancelled) return;
    bar.value = 100;
    li.className = "done";
    state.textContent = `done · ${humanBytes(file.size)}`;
    li.querySelector(".upload-cancel").hidden = true;
    return result.file;
  } catch (error) {
    if (item.cancelled) return;
    li.className = "failed";
    state.textContent = error.message;
    state.classList.remove("muted");
    state.setAttribute("role", "alert");
    li.querySelector(".upload-cancel").hidden = true;
  }
}

function refreshListing() {
  if (window.htmx) window.htmx.ajax("GET", window.location.pathname + window.location.search, { target: "#central", swap: "innerHTML", headers: { "HX-Target": "central" } });
}

async function uploadFiles(files) {
  const target = $("#upload-target");
  if (!target || !files.length) return;
  const rows = [...files].map((file) => [file, row(file)]);
  // Two at a time: several files progress together without starving each other.
  const pending = [...rows];
  const worker = async () => {
    while (pending.length) {
      const [file, li] = pending.shift();
      const done = await uploadOne(target.dataset.parent, file, li);
      if (done) refreshListing();
    }
  };
  await Promise.all([worker(), worker()]);
}

document.addEventListener("click", (event) => {
  if (event.target.closest("#upload-button")) $("#upload-input")?.click();
});
document.addEventListener("change", (event) => {
  if (event.target.id === "upload-input") {
    uploadFiles(event.target.files);
    event.target.value = "";
  }
});
document.addEventListener("keydown", (event) => {
  const field = event.target.closest("input, textarea, select, [contenteditable]");
  if (field || document.querySelector("dialog[open]") || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "u" && $("#upload-button")) { event.preventDefault(); $("#upload-input").click(); }
});

// Drag and drop anywhere on the central area.
const central = $("#central");
if (central) {
  let depth = 0;
  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  central.addEventListener("dragenter", (event) => {
    if (!hasFiles(event) || !$("#upload-target")) return;
    depth += 1;
    central.classList.add("dropping");
    central.dataset.dropLabel = `Drop to upload into ${$("#upload-target").dataset.name}`;
  });
  central.addEventListener("dragover", (event) => { if (hasFiles(event) && $("#upload-target")) event.preventDefault(); });
  central.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) central.classList.remove("dropping"); });
  central.addEventListener("drop", (event) => {
    if (!hasFiles(event) || !$("#upload-target")) return;
    event.preventDefault();
    depth = 0;
    central.classList.remove("dropping");
    uploadFiles(event.dataTransfer.files);
  });
}

// Multi-select: download the selection as one zip.
document.addEventListener("click", (event) => {
  if (event.target.id !== "download-selected") return;
  const ids = [...document.querySelectorAll(".select-item:checked")].map((box) => box.value);
  if (ids.length) window.location.assign(`/api/v1/zip?ids=${ids.join(",")}`);
});
