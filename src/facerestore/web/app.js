// The facerestore page: pick a photo or a video, send it as a job to this server's /v1 API, show progress,
// then a before/after comparison (of a chosen frame, for a video), the faces, and a download of the result.
"use strict";

const POLL_MS = 400;
const KEY_STEP = 2;
const BIG_KEY_STEP = 10;
const STAGE_TEXT = {
  queued: "Waiting for a free slot",
  detect: "Finding faces",
  upscale: "Upscaling the background",
  faces: "Restoring faces",
  done: "Finishing",
  encode: "Preparing the result",
  frames: "Restoring frames",
};

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("restore-form"),
  drop: $("drop-zone"),
  file: $("file-input"),
  fileName: $("file-name"),
  filePreview: $("file-preview"),
  model: $("face-model"),
  modelNote: $("model-note"),
  scale: $("scale"),
  background: $("bg-upsampler"),
  fidelityField: $("fidelity-field"),
  fidelity: $("fidelity"),
  fidelityValue: $("fidelity-value"),
  keyField: $("api-key-field"),
  key: $("api-key"),
  restore: $("restore-button"),
  message: $("message"),
  progressPanel: $("progress-panel"),
  progress: $("progress"),
  progressText: $("progress-text"),
  progressPercent: $("progress-percent"),
  cancel: $("cancel-button"),
  resultPanel: $("result-panel"),
  resultInfo: $("result-info"),
  download: $("download-link"),
  viewport: $("viewport"),
  stage: $("stage"),
  before: $("before-image"),
  after: $("after-image"),
  divider: $("divider"),
  faces: $("faces"),
  faceCount: $("face-count"),
  noFaces: $("no-faces"),
  timeField: $("time-field"),
  time: $("time"),
  timeValue: $("time-value"),
};

const state = {
  models: new Map(), // name -> registry row from /v1/models
  autoModel: null,
  autoFallbackNote: null,
  file: null,
  jobId: null,
  blobUrls: [],
  zoom: "fit",
  resultSize: null,
  dragging: false,
  frameLink: null, // a video job's frame endpoint; null for a photo
  frameUrls: [], // the frame images on show
  defaultScale: 2,
};

// -- talking to the API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders() {
  const key = sessionStorage.getItem("facerestore-key");
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (response.ok) return response;
  let message = `the server answered ${response.status}`;
  try {
    message = (await response.json()).error || message;
  } catch (_) {
    // not JSON: keep the status line
  }
  if (response.status === 401) ui.keyField.hidden = false;
  throw new ApiError(response.status, message);
}

async function blobUrl(path) {
  const url = URL.createObjectURL(await (await api(path)).blob());
  state.blobUrls.push(url);
  return url;
}

function releaseBlobs() {
  state.blobUrls.forEach((url) => URL.revokeObjectURL(url));
  state.blobUrls = [];
}

// -- messages and progress

function showMessage(text, kind = "error") {
  ui.message.textContent = text;
  ui.message.className = `message ${kind}`;
  ui.message.hidden = !text;
}

function explain(error) {
  if (!(error instanceof ApiError)) return `Could not reach the server (${error.message}).`;
  const detail = error.message.replace(/^upload: /, "");
  if (error.status === 422) {
    return `This file can't be read as a photo or a video: ${detail}. Choose a JPEG, PNG, WebP, TIFF, BMP or ` +
      "HEIC image, or an MP4, MOV, MKV, WebM or AVI video.";
  }
  if (error.status === 413) return `This photo is too large for this server: ${detail}.`;
  if (error.status === 429 || error.status === 503) return `The server is busy: ${detail}. Try again shortly.`;
  if (error.status === 401) return "This server needs an API key: enter it above and try again.";
  return `${detail.charAt(0).toUpperCase()}${detail.slice(1)}.`;
}

function showProgress(job) {
  const fraction = job.progress ? job.progress.fraction : 0;
  const stage = job.progress ? job.progress.stage : "queued";
  let text = STAGE_TEXT[stage] || "Working";
  if (job.status === "queued" && job.queue_position > 0) text += ` (${job.queue_position} ahead)`;
  if (["faces", "upscale", "frames"].includes(stage) && job.progress.total > 1) {
    text += ` (${Math.min(job.progress.done + 1, job.progress.total)} of ${job.progress.total})`;
  }
  ui.progressText.textContent = `${text}…`;
  ui.progress.value = Math.round(fraction * 100);
  ui.progressPercent.textContent = `${Math.round(fraction * 100)}%`;
}

function setBusy(busy) {
  ui.progressPanel.hidden = !busy;
  ui.restore.disabled = busy || !state.file;
  ui.cancel.disabled = false;
  if (busy) {
    ui.progress.value = 0;
    ui.progressPercent.textContent = "";
    ui.progressText.textContent = "Uploading…";
  }
}

// -- options

function selectedModel() {
  const name = ui.model.value === "auto" ? state.autoModel : ui.model.value;
  return state.models.get(name);
}

function updateModelFields() {
  const model = selectedModel();
  ui.fidelityField.hidden = !(model && model.supports_fidelity);
  if (model && !model.commercial_use) {
    ui.modelNote.textContent = `${model.title} is licensed “${model.licence}”: not for commercial use.`;
  } else if (ui.model.value === "auto" && state.autoFallbackNote) {
    ui.modelNote.textContent = `Note: ${state.autoFallbackNote}.`;
  } else {
    ui.modelNote.textContent = "";
  }
  ui.modelNote.hidden = !ui.modelNote.textContent;
}

function addOption(select, value, text, { disabled = false, selected = false } = {}) {
  const option = document.createElement("option");
  option.value = value;
  option.textContent = text;
  option.disabled = disabled;
  option.selected = selected;
  select.append(option);
}

function modelLabel(row) {
  const restriction = row.commercial_use ? "" : " · non-commercial";
  return `${row.title}${restriction}${row.installed ? "" : " (not installed)"}`;
}

const BACKGROUND_LABELS = { auto: "Automatic", none: "Resize only (fastest)" };

// The choices, defaults and ranges come from the server (its option declarations), never from this page.
function buildOptions(info, form) {
  const fields = form.properties;
  state.defaultScale = fields.scale.default;
  state.autoModel = info.auto_face_model;
  state.autoFallbackNote = info.auto_fallback_note;
  const auto = state.models.get(info.auto_face_model);
  addOption(ui.model, "auto", `Automatic: ${auto ? auto.title : info.auto_face_model}`, { selected: true });
  info.choices.face_model.filter((name) => name !== "auto").forEach((name) => {
    const row = state.models.get(name);
    addOption(ui.model, name, modelLabel(row), { disabled: !row.installed });
  });
  for (let scale = Math.ceil(fields.scale.minimum); scale <= fields.scale.maximum; scale += 1) {
    addOption(ui.scale, String(scale), `${scale}×`, { selected: scale === fields.scale.default });
  }
  if (acceptsAuto(fields.scale)) addOption(ui.scale, "auto", "Automatic (from the faces)");
  info.choices.bg_upsampler.forEach((name) => {
    const row = state.models.get(name);
    const text = BACKGROUND_LABELS[name] || (row ? row.title : name);
    addOption(ui.background, name, text, { selected: name === fields.bg_upsampler.default });
  });
  Object.assign(ui.fidelity, { min: fields.fidelity.minimum, max: fields.fidelity.maximum });
  ui.fidelity.value = fields.fidelity.default;
  ui.fidelityValue.textContent = Number(ui.fidelity.value).toFixed(2);
}

function acceptsAuto(field) {
  return (field.anyOf || []).some((kind) => (kind.enum || []).includes("auto"));
}

// A clip needs a number: its scale cannot follow each frame's faces.
function fitScaleToFile(file) {
  const video = file.type.startsWith("video/") || /\.(mp4|mov|m4v|mkv|webm|avi)$/i.test(file.name);
  const auto = ui.scale.querySelector('option[value="auto"]');
  if (!auto) return;
  auto.disabled = video;
  if (video && ui.scale.value === "auto") ui.scale.value = String(Math.round(state.defaultScale));
}

async function loadModels() {
  try {
    const [info, schema] = await Promise.all([
      api("/v1/models").then((response) => response.json()),
      api("/v1/openapi.json").then((response) => response.json()),
    ]);
    info.models.forEach((row) => state.models.set(row.name, row));
    buildOptions(info, schema.components.schemas.RestoreForm);
    updateModelFields();
  } catch (error) {
    showMessage(explain(error));
  }
}

function formData() {
  const data = new FormData();
  data.append("image", state.file, state.file.name);
  data.append("face_model", ui.model.value);
  data.append("scale", ui.scale.value);
  data.append("bg_upsampler", ui.background.value);
  if (!ui.fidelityField.hidden) data.append("fidelity", ui.fidelity.value);
  return data;
}

// -- choosing a file

function formatBytes(bytes) {
  return bytes < 1048576 ? `${Math.max(1, Math.round(bytes / 1024))} KB` : `${(bytes / 1048576).toFixed(1)} MB`;
}

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  fitScaleToFile(file);
  ui.fileName.textContent = `${file.name} · ${formatBytes(file.size)}`;
  ui.filePreview.hidden = true;
  ui.filePreview.onload = () => { ui.filePreview.hidden = false; };
  ui.filePreview.onerror = () => { ui.filePreview.hidden = true; }; // formats the browser can't show
  if (ui.filePreview.src) URL.revokeObjectURL(ui.filePreview.src);
  ui.filePreview.src = URL.createObjectURL(file);
  ui.drop.classList.add("has-file");
  ui.restore.disabled = false;
  showMessage("");
}

function wireDropZone() {
  ui.file.addEventListener("change", () => chooseFile(ui.file.files[0]));
  ["dragenter", "dragover"].forEach((type) => ui.drop.addEventListener(type, (event) => {
    event.preventDefault();
    ui.drop.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((type) => ui.drop.addEventListener(type, () => {
    ui.drop.classList.remove("dragging");
  }));
  ui.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    chooseFile(event.dataTransfer.files[0]);
  });
}

// -- running a job

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function pollUntilFinished(jobId) {
  for (;;) {
    const job = await (await api(`/v1/jobs/${jobId}`)).json();
    if (["succeeded", "failed", "cancelled"].includes(job.status)) return job;
    showProgress(job);
    await sleep(POLL_MS);
  }
}

async function runJob(event) {
  event.preventDefault();
  if (!state.file) return;
  if (ui.key.value) sessionStorage.setItem("facerestore-key", ui.key.value.trim());
  showMessage("");
  setBusy(true);
  try {
    const created = await (await api("/v1/jobs", { method: "POST", body: formData() })).json();
    state.jobId = created.id;
    const job = await pollUntilFinished(created.id);
    if (job.status === "succeeded") await showResult(job);
    else if (job.status === "failed") showMessage(`The restore failed: ${job.error}`);
    else showMessage("Cancelled.", "info");
  } catch (error) {
    showMessage(explain(error));
  } finally {
    state.jobId = null;
    setBusy(false);
  }
}

async function cancelJob() {
  if (!state.jobId) return;
  ui.cancel.disabled = true;
  ui.progressText.textContent = "Cancelling…";
  try {
    await api(`/v1/jobs/${state.jobId}/cancel`, { method: "POST" });
  } catch (error) {
    showMessage(explain(error));
  }
}

// -- the result

function stem(name) {
  return name.replace(/\.[^.]+$/, "") || "photo";
}

// The faces' frame-to-frame change against the input's (1 = no flicker added): the report's warping error.
function steadiness(flicker) {
  const ratio = flicker && flicker.warping_error_x_input;
  return ratio ? ` · face flicker ${ratio}× the input's` : "";
}

function describe(result) {
  const seconds = Object.values(result.timings).reduce((sum, value) => sum + value, 0);
  const sizes = `${result.input.width} × ${result.input.height} → ${result.width} × ${result.height}`;
  const models = `${result.face_model} · background: ${result.bg_upsampler} · ${seconds.toFixed(1)} s`;
  if (result.video) {
    const tracks = Object.keys(result.video.tracks).length;
    return `${sizes} · ${result.video.frames_out} frames at ${result.video.fps} fps · ` +
      `${tracks} face track${tracks === 1 ? "" : "s"}${steadiness(result.video.flicker)} · ${models}`;
  }
  const count = result.faces.length;
  return `${sizes} · ${count} face${count === 1 ? "" : "s"} · ${models}`;
}

async function showResult(job) {
  releaseBlobs();
  const result = job.result;
  state.frameLink = job.links.frame || null;
  const afterUrl = await blobUrl(job.links.result);
  state.resultSize = { width: result.width, height: result.height };
  ui.stage.style.aspectRatio = `${result.width} / ${result.height}`;
  if (state.frameLink) {
    ui.time.max = String(result.video.duration_s || 0);
    ui.time.value = "0";
    await showFrame();
  } else {
    const beforeUrl = await blobUrl(job.links.input);
    await Promise.all([loadImage(ui.after, afterUrl), loadImage(ui.before, beforeUrl)]);
  }
  ui.timeField.hidden = !state.frameLink;
  ui.download.href = afterUrl;
  ui.download.download = `${stem(state.file.name)}-restored.${result.format === "jpeg" ? "jpg" : result.format}`;
  ui.resultInfo.textContent = describe(result);
  await showFaces(job);
  ui.resultPanel.hidden = false;
  setDivider(50);
  applyZoom(state.zoom);
  ui.resultPanel.scrollIntoView({ behavior: "smooth", block: "start" });
}

// A video's comparison shows one frame, before and after, at the time the slider picks.
async function showFrame() {
  const at = Number(ui.time.value);
  ui.timeValue.textContent = `${at.toFixed(2)} s`;
  const [after, before] = await Promise.all(["after", "before"].map(
    async (side) => URL.createObjectURL(await (await api(`${state.frameLink}?at=${at}&side=${side}`)).blob()),
  ));
  await Promise.all([loadImage(ui.after, after), loadImage(ui.before, before)]);
  state.frameUrls.forEach((url) => URL.revokeObjectURL(url)); // the frames shown before these
  state.frameUrls = [after, before];
  ui.stage.dataset.frameAt = String(at);
}

function loadImage(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve();
    img.onerror = () => reject(new Error("the browser could not show the image"));
    img.src = url;
  });
}

async function showFaces(job) {
  ui.faces.replaceChildren();
  const faces = job.result.faces;
  ui.faceCount.textContent = faces.length ? `(${faces.length})` : "";
  ui.noFaces.hidden = faces.length > 0 || Boolean(job.result.video);
  const links = job.links.faces || [];
  const items = await Promise.all(faces.map(async (face, index) => {
    const [before, after] = await Promise.all([blobUrl(links[index].before), blobUrl(links[index].after)]);
    return faceItem(face, index, before, after);
  }));
  ui.faces.append(...items);
}

function faceItem(face, index, beforeUrl, afterUrl) {
  const item = document.createElement("li");
  item.className = "face";
  const pair = document.createElement("div");
  pair.className = "face-pair";
  [["Before", beforeUrl], ["After", afterUrl]].forEach(([label, url]) => {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = url;
    img.alt = `Face ${index + 1}, ${label.toLowerCase()}`;
    const caption = document.createElement("figcaption");
    caption.textContent = label;
    figure.append(img, caption);
    pair.append(figure);
  });
  const info = document.createElement("p");
  info.className = "face-info";
  info.textContent = `Face ${index + 1} · confidence ${(face.score * 100).toFixed(0)}%`;
  item.append(pair, info);
  if (face.analysis) item.append(analysisInfo(face.analysis, face.model, face.blend));
  return item;
}

// What the engine measured on the face before restoring it, and what it expected (facerestore analyze).
function analysisInfo(analysis, model, blend) {
  const quality = analysis.jpeg_quality ? ` · JPEG quality ${analysis.jpeg_quality}` : "";
  const restored = model === "none" ? "kept as it was" : `${model} at strength ${blend}`;
  const info = document.createElement("p");
  info.className = "face-analysis";
  info.textContent = `${Math.round(analysis.width)} px wide, detail of a ${Math.round(analysis.effective_width)} px ` +
    `face · noise ${analysis.noise.toFixed(1)}${quality} · yaw ${Math.round(analysis.yaw)}° · ` +
    `${analysis.advice.damage} damage: ${restored}. ${analysis.advice.outcome}`;
  return info;
}

// -- comparison slider and zoom

function setDivider(percent) {
  const value = Math.max(0, Math.min(100, percent));
  ui.stage.style.setProperty("--position", `${value}%`);
  ui.divider.setAttribute("aria-valuenow", String(Math.round(value)));
  ui.divider.setAttribute("aria-valuetext", `${Math.round(value)}% before`);
}

function dividerFromPointer(event) {
  const box = ui.stage.getBoundingClientRect();
  setDivider(((event.clientX - box.left) / box.width) * 100);
}

function wireComparison() {
  ui.stage.addEventListener("pointerdown", (event) => {
    if (state.zoom === "full" && event.target !== ui.divider && !ui.divider.contains(event.target)) return;
    state.dragging = true;
    ui.stage.setPointerCapture(event.pointerId);
    dividerFromPointer(event);
    ui.divider.focus({ preventScroll: true });
    event.preventDefault();
  });
  ui.stage.addEventListener("pointermove", (event) => { if (state.dragging) dividerFromPointer(event); });
  ["pointerup", "pointercancel"].forEach((type) => ui.stage.addEventListener(type, () => {
    state.dragging = false;
  }));
  ui.divider.addEventListener("keydown", onDividerKey);
}

function onDividerKey(event) {
  const now = Number(ui.divider.getAttribute("aria-valuenow"));
  const step = event.shiftKey ? BIG_KEY_STEP : KEY_STEP;
  const moves = {
    ArrowLeft: now - step, ArrowDown: now - step, ArrowRight: now + step, ArrowUp: now + step,
    PageDown: now - BIG_KEY_STEP, PageUp: now + BIG_KEY_STEP, Home: 0, End: 100,
  };
  if (!(event.key in moves)) return;
  event.preventDefault();
  setDivider(moves[event.key]);
}

function fitWidth() {
  const { width, height } = state.resultSize;
  const tallest = Math.max(240, window.innerHeight * 0.75);
  return Math.min(ui.viewport.clientWidth, (tallest * width) / height);
}

function applyZoom(zoom) {
  state.zoom = zoom;
  document.querySelectorAll("[data-zoom]").forEach((button) => {
    button.setAttribute("aria-pressed", String(button.dataset.zoom === zoom));
  });
  if (!state.resultSize) return;
  const width = zoom === "full" ? state.resultSize.width / window.devicePixelRatio : fitWidth();
  ui.stage.style.width = `${Math.round(width)}px`;
  ui.viewport.classList.toggle("zoomed", zoom === "full");
}

function wireZoom() {
  document.querySelectorAll("[data-zoom]").forEach((button) => {
    button.addEventListener("click", () => applyZoom(button.dataset.zoom));
  });
  window.addEventListener("resize", () => applyZoom(state.zoom));
}

// -- start

function start() {
  wireDropZone();
  wireComparison();
  wireZoom();
  ui.form.addEventListener("submit", runJob);
  ui.cancel.addEventListener("click", cancelJob);
  ui.model.addEventListener("change", updateModelFields);
  ui.time.addEventListener("change", () => showFrame().catch((error) => showMessage(explain(error))));
  ui.time.addEventListener("input", () => { ui.timeValue.textContent = `${Number(ui.time.value).toFixed(2)} s`; });
  ui.fidelity.addEventListener("input", () => {
    ui.fidelityValue.textContent = Number(ui.fidelity.value).toFixed(2);
  });
  loadModels();
}

start();
