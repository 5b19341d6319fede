// The page: a live tab (webcam or video file -> WS ws/stream) and an upload tab (one
// POST match?include=overlay,warp per click). Plain JavaScript, no dependencies. Every URL
// is relative to the page's own location, so the page works under any path prefix.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_SIDE = Number(document.body.dataset.maxSide) || 640;
const SPARK_SECONDS = 10;

// ---- errors, in plain words ----------------------------------------------------
function showError(text) {
  $("error-text").textContent = text;
  $("error").hidden = false;
}
function clearError() { $("error").hidden = true; }
$("error-close").addEventListener("click", clearError);

function httpErrorText(status, body) {
  const detail = body && body.detail ? body.detail : "";
  if (status === 503) return "The server is busy; try again in a moment.";
  if (status === 413) return `Image too large: ${detail}`;
  if (status === 415 || status === 422) return `Image rejected: ${detail}`;
  return `The server answered ${status}: ${detail || "unknown error"}`;
}

function socketErrorText(message) {
  if (message.code === "busy") return "The server is busy; frames are being skipped.";
  if (message.code === "frame_too_large") return `A frame was too large: ${message.detail}`;
  if (message.code === "invalid_image" || message.code === "unsupported_image")
    return `A frame was rejected: ${message.detail}`;
  return `Stream error: ${message.detail}`;
}

// ---- tabs -----------------------------------------------------------------------
for (const tab of document.querySelectorAll('[role="tab"]')) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll('[role="tab"]')) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      $(other.getAttribute("aria-controls")).hidden = !selected;
    }
  });
}

// ---- live tab -------------------------------------------------------------------
const live = {
  socket: null, stream: null, fileUrl: null, overlayUrl: null,
  capture: document.createElement("canvas"),
  inFlight: false, sentAt: 0, paused: false,
  rttFps: 0, lastAnswer: 0,
  history: [],  // {t, fps, latency} of the last SPARK_SECONDS
};

function streamUrl() {
  // ws(s)://<this page's host and path>/ws/stream, whatever prefix a proxy put the page under.
  const url = new URL("ws/stream", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

function setLiveControls(running) {
  $("set-reference").disabled = !running;
  $("pause").disabled = !running;
  $("stop").disabled = !running;
  $("start-camera").disabled = running;
  $("live-status").textContent = running ? (live.paused ? "paused" : "streaming") : "stopped";
}

async function startCamera() {
  clearError();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("This browser offers no camera here (a secure context is needed); pick a video file instead.");
    return;
  }
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (error) {
    if (error.name === "NotAllowedError" || error.name === "SecurityError")
      showError("Camera access was denied. Allow it in the browser settings, or pick a video file instead.");
    else if (error.name === "NotFoundError" || error.name === "OverconstrainedError")
      showError("No camera was found; pick a local video file instead.");
    else showError(`The camera could not start: ${error.message}`);
    return;
  }
  $("video").srcObject = live.stream;
  await startStreaming();
}

async function startVideoFile(file) {
  clearError();
  stopStreaming();
  live.fileUrl = URL.createObjectURL(file);
  const video = $("video");
  video.srcObject = null;
  video.src = live.fileUrl;
  video.loop = true;
  await startStreaming();
}

async function startStreaming() {
  const video = $("video");
  try {
    await video.play();
  } catch (error) {
    showError(`The video could not play: ${error.message}`);
    return;
  }
  const socket = new WebSocket(streamUrl());
  socket.binaryType = "blob";
  live.socket = socket;
  live.paused = false;
  live.inFlight = false;
  live.history = [];
  socket.addEventListener("open", () => {
    setLiveControls(true);
    sendSettings();
    sendFrame();
  });
  socket.addEventListener("message", onSocketMessage);
  socket.addEventListener("close", () => {
    if (live.socket === socket) {
      showError("The connection to the server closed.");
      stopStreaming();
    }
  });
  socket.addEventListener("error", () => showError("Could not reach the server's stream."));
}

function stopStreaming() {
  const socket = live.socket;
  live.socket = null;
  if (socket) socket.close();
  if (live.stream) live.stream.getTracks().forEach((track) => track.stop());
  live.stream = null;
  if (live.fileUrl) URL.revokeObjectURL(live.fileUrl);
  live.fileUrl = null;
  const video = $("video");
  video.pause();
  video.srcObject = null;
  setLiveControls(false);
}

function sendSettings() {
  const threshold = parseFloat($("live-threshold").value);
  const maxMatches = parseInt($("live-max-matches").value, 10);
  send({
    type: "settings",
    threshold: Number.isFinite(threshold) ? threshold : null,
    max_matches: Number.isFinite(maxMatches) ? maxMatches : null,
    size: MAX_SIDE,
    lines: $("show-lines").checked,
    points: $("show-points").checked,
    outline: $("show-outline").checked,
  });
}

function send(message) {
  if (live.socket && live.socket.readyState === WebSocket.OPEN) live.socket.send(JSON.stringify(message));
}

// One frame in flight: the next is captured when the result of this one arrived (or,
// should an answer be lost, once the socket's buffer has drained for a while).
function sendFrame() {
  const socket = live.socket, video = $("video");
  if (!socket || socket.readyState !== WebSocket.OPEN || live.paused || live.inFlight) return;
  if (!video.videoWidth) { requestAnimationFrame(sendFrame); return; }
  const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  live.capture.width = Math.round(video.videoWidth * scale);
  live.capture.height = Math.round(video.videoHeight * scale);
  live.capture.getContext("2d").drawImage(video, 0, 0, live.capture.width, live.capture.height);
  live.inFlight = true;
  live.sentAt = performance.now();
  live.capture.toBlob((blob) => {
    if (blob && live.socket === socket && socket.readyState === WebSocket.OPEN) socket.send(blob);
    else live.inFlight = false;
  }, "image/jpeg", 0.85);
}

setInterval(() => {
  if (live.inFlight && live.socket && live.socket.bufferedAmount === 0 &&
      performance.now() - live.sentAt > 2000) {
    live.inFlight = false;
    sendFrame();
  }
}, 500);

function answered(withResult) {
  const now = performance.now();
  if (live.lastAnswer) {
    const fps = 1000 / (now - live.lastAnswer);
    live.rttFps = live.rttFps ? 0.8 * live.rttFps + 0.2 * fps : fps;
    $("rtt-fps").textContent = live.rttFps.toFixed(1);
  }
  if (withResult) {
    live.history.push({ t: now, fps: live.rttFps, latency: now - live.sentAt });
    while (live.history.length && now - live.history[0].t > SPARK_SECONDS * 1000) live.history.shift();
    drawSparkline();
  }
  live.lastAnswer = now;
  live.inFlight = false;
  requestAnimationFrame(sendFrame);
}

// FPS (blue) and latency (orange) over the last SPARK_SECONDS, each on its own scale.
function drawSparkline() {
  const canvas = $("sparkline"), context = canvas.getContext("2d");
  const width = canvas.width, height = canvas.height, now = performance.now();
  context.clearRect(0, 0, width, height);
  const points = live.history;
  if (points.length < 2) return;
  const series = [["fps", "#1f5fbf"], ["latency", "#c0560f"]];
  const ranges = {};
  for (const [key, colour] of series) {
    const top = Math.max(...points.map((p) => p[key])) * 1.1 || 1;
    ranges[key] = top;
    context.strokeStyle = colour;
    context.lineWidth = 2;
    context.beginPath();
    points.forEach((p, i) => {
      const x = width - ((now - p.t) / (SPARK_SECONDS * 1000)) * width;
      const y = height - 2 - (p[key] / top) * (height - 4);
      if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
    });
    context.stroke();
  }
  $("spark-range").textContent = `top: ${ranges.fps.toFixed(0)} FPS, ${ranges.latency.toFixed(0)} ms`;
}

function onSocketMessage(event) {
  if (typeof event.data !== "string") {
    // The overlay of the latest result.
    if (live.overlayUrl) URL.revokeObjectURL(live.overlayUrl);
    live.overlayUrl = URL.createObjectURL(event.data);
    $("overlay").src = live.overlayUrl;
    return;
  }
  const message = JSON.parse(event.data);
  switch (message.type) {
    case "result":
      $("server-fps").textContent = message.server_fps.toFixed(1);
      $("inference-ms").textContent = message.inference_ms.toFixed(1);
      $("num-matches").textContent = message.num_matches;
      $("num-inliers").textContent = message.num_inliers;
      $("tracking").textContent = message.homography ? "tracking" : "lost";
      $("tracking").className = message.homography ? "good" : "bad";
      $("frames-dropped").textContent = message.frames_dropped;
      // The server draws this frame's overlay while it matches the next one.
      answered(true);
      break;
    case "error":
      showError(socketErrorText(message));
      if (message.frame_id !== undefined) answered(false);
      break;
    case "skipped":
      answered(false);
      break;
    case "reference_set":
      $("live-status").textContent = `reference: frame ${message.frame_id ?? "next"}`;
      break;
    case "paused":
    case "resumed":
      $("live-status").textContent = message.type === "paused" ? "paused" : "streaming";
      break;
    default:
      break;
  }
}

function setReference() { send({ type: "set_reference" }); }
function togglePause() {
  if (!live.socket) return;
  live.paused = !live.paused;
  send({ type: live.paused ? "pause" : "resume" });
  $("pause").textContent = live.paused ? "Resume (p)" : "Pause (p)";
  if (!live.paused) { live.inFlight = false; sendFrame(); }
}
function toggle(id) {
  $(id).checked = !$(id).checked;
  sendSettings();
}

$("start-camera").addEventListener("click", startCamera);
$("video-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) startVideoFile(file);
});
$("set-reference").addEventListener("click", setReference);
$("pause").addEventListener("click", togglePause);
$("stop").addEventListener("click", stopStreaming);
for (const id of ["live-threshold", "live-max-matches", "show-lines", "show-points", "show-outline"])
  $(id).addEventListener("change", sendSettings);
const KEYS = { s: setReference, p: togglePause, l: () => toggle("show-lines"),
               d: () => toggle("show-points"), o: () => toggle("show-outline") };
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || $("live").hidden) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const action = KEYS[event.key];
  if (action) action();
});

// ---- upload tab -----------------------------------------------------------------
let downloadUrl = null;

// Put files into the two inputs: two files fill a and b; one fills the first empty slot
// (a when both are taken). Drag-and-drop, paste and the example button all come here.
function setFiles(files) {
  const images = [...files].filter((file) => file.type.startsWith("image/"));
  if (!images.length) { showError("That was not an image; drop or paste JPEG, PNG or WebP files."); return; }
  const slots = images.length >= 2 ? ["image-a", "image-b"]
    : [!$("image-a").files.length ? "image-a" : !$("image-b").files.length ? "image-b" : "image-a"];
  slots.forEach((id, i) => {
    const transfer = new DataTransfer();
    transfer.items.add(images[i]);
    $(id).files = transfer.files;
  });
  clearError();
  showChosen();
}

function showChosen() {
  const name = (id) => ($(id).files[0] ? $(id).files[0].name : "none yet");
  $("chosen").textContent = `a: ${name("image-a")} · b: ${name("image-b")}`;
}

// The whole upload tab takes drops (a file dropped beside the zone would otherwise make
// the browser leave the page to show it); the zone lights up.
const dropZone = $("drop-zone"), uploadTab = $("upload");
for (const kind of ["dragenter", "dragover"])
  uploadTab.addEventListener(kind, (event) => { event.preventDefault(); dropZone.classList.add("over"); });
for (const kind of ["dragleave", "drop"])
  uploadTab.addEventListener(kind, () => dropZone.classList.remove("over"));
uploadTab.addEventListener("drop", (event) => {
  event.preventDefault();
  setFiles(event.dataTransfer.files);
});
document.addEventListener("paste", (event) => {
  if ($("upload").hidden || !event.clipboardData) return;
  const files = [...event.clipboardData.items].filter((item) => item.kind === "file").map((item) => item.getAsFile());
  if (files.length) { event.preventDefault(); setFiles(files); }
});
$("image-a").addEventListener("change", showChosen);
$("image-b").addEventListener("change", showChosen);

$("example-button").addEventListener("click", async () => {
  clearError();
  try {
    const files = await Promise.all(["sign_a.jpg", "sign_b.jpg"].map(async (name) => {
      const response = await fetch(`static/examples/${name}`);
      if (!response.ok) throw new Error(`the example ${name} is missing (${response.status})`);
      return new File([await response.blob()], name, { type: "image/jpeg" });
    }));
    setFiles(files);
  } catch (error) {
    showError(`Could not load the example: ${error.message}`);
    return;
  }
  $("upload-form").requestSubmit();
});

function showResult(result, ransac) {
  const inliers = result.num_inliers === null ? "" : `, ${result.num_inliers} inliers`;
  const turned = result.rotation_b ? ` (b turned ${result.rotation_b}° for them)` : "";
  $("upload-summary").textContent =
    `${result.num_matches} matches${inliers}${turned} in ${result.timings_ms.total.toFixed(0)} ms ` +
    `(inference ${result.timings_ms.inference.toFixed(0)} ms, ${result.backend})`;
  $("upload-matches").textContent = result.num_matches;
  $("upload-inliers").textContent = result.num_inliers === null ? "–" : result.num_inliers;
  $("upload-total-ms").textContent = result.timings_ms.total.toFixed(0);
  $("upload-inference-ms").textContent = result.timings_ms.inference.toFixed(0);
  $("upload-stats").hidden = false;
  $("homography").hidden = result.homography === null;
  if (result.homography) {
    const label = ransac === "fundamental" ? "fundamental matrix" : "homography a → b";
    $("homography").textContent = `${label}:\n` +
      result.homography.map((row) => row.map((v) => v.toPrecision(6).padStart(14)).join(" ")).join("\n");
  }
  $("match-overlay").src = `data:image/png;base64,${result.overlay_png}`;
  $("overlay-caption").textContent = result.inliers === null
    ? "matches: colour follows the position in a"
    : "matches: colour follows the position in a; red: outliers of the fitted geometry";
  if (result.warp_png) $("warp-overlay").src = `data:image/png;base64,${result.warp_png}`;
  else { $("warp-overlay").removeAttribute("src"); showError("No homography was found between the two images."); }
  // The download holds the matches, not the pictures.
  const { overlay_png: _o, warp_png: _w, ...matches } = result;
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  downloadUrl = URL.createObjectURL(new Blob([JSON.stringify(matches, null, 1)], { type: "application/json" }));
  $("download-json").href = downloadUrl;
  $("download-json").hidden = false;
}

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  if (!$("image-a").files.length || !$("image-b").files.length) {
    showError("Choose two images first (or drop, paste, or try the example).");
    return;
  }
  const form = new FormData();
  form.append("a", $("image-a").files[0]);
  form.append("b", $("image-b").files[0]);
  const params = new URLSearchParams({
    threshold: $("threshold").value || $("threshold").defaultValue,
    ransac: $("ransac").value,
    ransac_threshold: $("ransac-threshold").value || $("ransac-threshold").defaultValue,
    draw: $("draw").value,
    include: "overlay,warp",  // everything from one model run
  });
  if ($("max-matches").value) params.set("max_matches", $("max-matches").value);
  if ($("rotations").checked) params.set("rotations", "true");
  const buttons = [$("match-button"), $("example-button")];
  buttons.forEach((button) => { button.disabled = true; });
  $("upload-summary").textContent = "matching…";
  try {
    const response = await fetch(`match?${params}`, { method: "POST", body: form });
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (_) { /* not JSON */ }
      throw new Error(httpErrorText(response.status, body));
    }
    showResult(await response.json(), params.get("ransac"));
  } catch (error) {
    $("upload-summary").textContent = "";
    showError(error.message === "Failed to fetch" ? "Could not reach the server." : error.message);
  } finally {
    buttons.forEach((button) => { button.disabled = false; });
  }
});
