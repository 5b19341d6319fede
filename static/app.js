// The page: a live tab (webcam or video file -> WS /ws/stream) and an upload tab
// (POST /match and /register). Plain JavaScript, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_SIDE = Number(document.body.dataset.maxSide) || 640;

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
};

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
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/stream`);
  socket.binaryType = "blob";
  live.socket = socket;
  live.paused = false;
  live.inFlight = false;
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

function answered() {
  const now = performance.now();
  if (live.lastAnswer) {
    const fps = 1000 / (now - live.lastAnswer);
    live.rttFps = live.rttFps ? 0.8 * live.rttFps + 0.2 * fps : fps;
    $("rtt-fps").textContent = live.rttFps.toFixed(1);
  }
  live.lastAnswer = now;
  live.inFlight = false;
  requestAnimationFrame(sendFrame);
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
      $("frames-dropped").textContent = message.frames_dropped;
      // The server draws this frame's overlay while it matches the next one.
      answered();
      break;
    case "error":
      showError(socketErrorText(message));
      if (message.frame_id !== undefined) answered();
      break;
    case "skipped":
      answered();
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

$("start-camera").addEventListener("click", startCamera);
$("video-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) startVideoFile(file);
});
$("set-reference").addEventListener("click", setReference);
$("pause").addEventListener("click", togglePause);
$("stop").addEventListener("click", stopStreaming);
$("live-threshold").addEventListener("change", sendSettings);
$("live-max-matches").addEventListener("change", sendSettings);
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || $("live").hidden) return;
  if (event.key === "s") setReference();
  else if (event.key === "p") togglePause();
});

// ---- upload tab -----------------------------------------------------------------
let downloadUrl = null;

async function post(path, params, form) {
  const response = await fetch(`${path}?${params}`, { method: "POST", body: form });
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    throw new Error(httpErrorText(response.status, body));
  }
  return response;
}

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  const form = new FormData();
  form.append("a", $("image-a").files[0]);
  form.append("b", $("image-b").files[0]);
  const params = new URLSearchParams({
    threshold: $("threshold").value || "0.2",
    ransac: $("ransac").value,
    ransac_threshold: $("ransac-threshold").value || "3",
  });
  if ($("max-matches").value) params.set("max_matches", $("max-matches").value);
  const button = $("match-button");
  button.disabled = true;
  $("upload-summary").textContent = "matching…";
  try {
    const result = await (await post("/match", params, form)).json();
    const pngParams = new URLSearchParams(params);
    pngParams.set("format", "png");
    const overlay = await (await post("/match", pngParams, form)).blob();
    $("match-overlay").src = URL.createObjectURL(overlay);
    const inliers = result.num_inliers === null ? "" : `, ${result.num_inliers} inliers`;
    $("upload-summary").textContent =
      `${result.num_matches} matches${inliers} in ${result.timings_ms.total.toFixed(0)} ms ` +
      `(inference ${result.timings_ms.inference.toFixed(0)} ms, ${result.backend})`;
    $("homography").hidden = result.homography === null;
    if (result.homography) {
      const label = params.get("ransac") === "fundamental" ? "fundamental matrix" : "homography a → b";
      $("homography").textContent = `${label}:\n` +
        result.homography.map((row) => row.map((v) => v.toPrecision(6).padStart(14)).join(" ")).join("\n");
    }
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = URL.createObjectURL(new Blob([JSON.stringify(result, null, 1)], { type: "application/json" }));
    $("download-json").href = downloadUrl;
    $("download-json").hidden = false;
    const registered = await (await post("/register", params, form)).json();
    if (registered.overlay_png) $("warp-overlay").src = `data:image/png;base64,${registered.overlay_png}`;
    else { $("warp-overlay").removeAttribute("src"); showError("No homography was found between the two images."); }
  } catch (error) {
    $("upload-summary").textContent = "";
    showError(error.message === "Failed to fetch" ? "Could not reach the server." : error.message);
  } finally {
    button.disabled = false;
  }
});
