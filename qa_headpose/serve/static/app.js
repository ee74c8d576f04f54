// qa-headpose live page: webcam frames (or a dropped image) -> POST /v1/poses -> boxes and head axes on a canvas.
// Plain JavaScript, no build step, nothing loaded from elsewhere. window.qaHeadpose holds the latest state
// (frames, fps, latencyMs, faces, ...) for tests and the console.
"use strict";

(() => {
  const API = "/v1/poses";
  // Head axes as qa_headpose.draw: x red (left ear), y green (up), z blue (out of the nose).
  const AXIS_COLORS = ["#ff3030", "#30ff30", "#3080ff"];
  const BOX_COLOR = "#ffd400";
  const FPS_WINDOW_MS = 2000;

  const state = {
    mode: "idle", // "camera", "image" or "idle"
    frames: 0, // answers drawn since the page loaded
    fps: 0, // answers per second over the last 2 s (camera)
    latencyMs: null, // browser round trip of the last frame: encode + upload + server + JSON
    serverMs: null, // the server's own total for it
    faces: [],
    width: 0,
    height: 0,
    error: null,
    model: null,
  };
  window.qaHeadpose = state;

  const $ = (id) => document.getElementById(id);
  const view = $("view");
  const ctx = view.getContext("2d");
  const video = $("camera");
  const grab = document.createElement("canvas");
  const grabCtx = grab.getContext("2d");
  const button = $("camera-button");
  let stream = null;
  let running = false;
  let stamps = [];

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function setStatus(text, isError = false) {
    const el = $("status");
    el.textContent = text;
    el.classList.toggle("error", isError);
    state.error = isError ? text : null;
  }

  async function postImage(blob) {
    const resp = await fetch(API, { method: "POST", body: blob, headers: { "Content-Type": blob.type } });
    const body = await resp.json().catch(() => null);
    if (!resp.ok) {
      const err = body && body.error;
      const error = new Error(err ? `${err.status} ${err.code}: ${err.message}` : `HTTP ${resp.status}`);
      error.status = resp.status;
      throw error;
    }
    return body;
  }

  function encode(canvas, type, quality) {
    return new Promise((resolve, reject) =>
      canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("cannot encode the frame"))), type, quality),
    );
  }

  function drawFace(face, scale) {
    const [x0, y0, x1, y1] = face.box;
    const side = Math.max(x1 - x0, y1 - y0);
    const width = Math.max(2, side / 60) * scale;
    ctx.lineWidth = Math.max(1, width / 2);
    ctx.strokeStyle = BOX_COLOR;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const cx = (x0 + x1) / 2;
    const cy = (y0 + y1) / 2;
    const size = side * 0.8;
    // Camera frame: x right, y up, z to the camera; the axis farthest from the camera first.
    const order = [0, 1, 2].sort((a, b) => face.axes[a][2] - face.axes[b][2]);
    ctx.lineWidth = width;
    ctx.lineCap = "round";
    for (const i of order) {
      ctx.strokeStyle = AXIS_COLORS[i];
      ctx.beginPath();
      ctx.moveTo(cx, cy);
      ctx.lineTo(cx + size * face.axes[i][0], cy - size * face.axes[i][1]);
      ctx.stroke();
    }
    const label = `yaw ${face.yaw.toFixed(0)} pitch ${face.pitch.toFixed(0)} roll ${face.roll.toFixed(0)}`;
    ctx.font = `${Math.round(Math.min(Math.max(side / 9, 12), 28))}px system-ui, sans-serif`;
    ctx.lineWidth = 4;
    ctx.strokeStyle = "#000";
    ctx.fillStyle = face.saturated ? "#ff9090" : "#fff";
    const y = Math.max(y0 - 6, 16);
    ctx.strokeText(label, x0, y);
    ctx.fillText(label, x0, y);
  }

  function drawOverlay(text) {
    ctx.font = "16px system-ui, sans-serif";
    const w = ctx.measureText(text).width + 12;
    ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
    ctx.fillRect(0, 0, w, 24);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, 6, 17);
  }

  function showTable(faces) {
    const rows = faces.map((f) => {
      const tr = document.createElement("tr");
      for (const v of [f.face, f.yaw.toFixed(1), f.pitch.toFixed(1), f.roll.toFixed(1), f.score.toFixed(2)]) {
        const td = document.createElement("td");
        td.textContent = String(v);
        tr.appendChild(td);
      }
      if (f.saturated) tr.title = "an angle at the edge of the model's range (+-99 degrees)";
      return tr;
    });
    $("faces").querySelector("tbody").replaceChildren(...rows);
  }

  function render(source, result, latencyMs) {
    view.width = source.width;
    view.height = source.height;
    ctx.drawImage(source, 0, 0);
    const scale = Math.max(1, source.width / 640);
    for (const face of result.faces) drawFace(face, scale);
    state.faces = result.faces;
    state.width = result.image.width;
    state.height = result.image.height;
    state.latencyMs = latencyMs;
    state.serverMs = result.timings_ms.total;
    state.frames += 1;
    $("latency").textContent = latencyMs.toFixed(0);
    $("server-ms").textContent = result.timings_ms.total.toFixed(0);
    $("face-count").textContent = String(result.faces.length);
    showTable(result.faces);
    const parts = [`${result.faces.length} face${result.faces.length === 1 ? "" : "s"}`, `${latencyMs.toFixed(0)} ms`];
    if (state.mode === "camera") parts.unshift(`${state.fps.toFixed(1)} FPS`);
    drawOverlay(parts.join(" \u00b7 "));
  }

  function tick(now) {
    stamps.push(now);
    while (stamps.length > 1 && now - stamps[0] > FPS_WINDOW_MS) stamps.shift();
    state.fps = stamps.length > 1 ? ((stamps.length - 1) * 1000) / (now - stamps[0]) : 0;
    $("fps").textContent = state.fps.toFixed(1);
  }

  async function cameraLoop() {
    // One frame in flight at a time: the next frame is grabbed when the answer arrives (lowest latency).
    while (running) {
      if (video.readyState < 2 || !video.videoWidth) {
        await sleep(30);
        continue;
      }
      grab.width = video.videoWidth;
      grab.height = video.videoHeight;
      grabCtx.drawImage(video, 0, 0);
      const start = performance.now();
      let result;
      try {
        result = await postImage(await encode(grab, "image/jpeg", 0.85));
      } catch (err) {
        setStatus(`Frame failed: ${err.message}`, true);
        await sleep(err.status === 503 ? 200 : 1000);
        continue;
      }
      if (!running) break;
      const now = performance.now();
      tick(now);
      render(grab, result, now - start);
      if (state.error) setStatus("Camera on: every frame goes to POST /v1/poses.");
    }
  }

  async function startCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      setStatus("No camera API here (the page needs http://localhost or https). Drop an image instead.", true);
      return;
    }
    setStatus("Asking for the camera\u2026");
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 } },
        audio: false,
      });
    } catch (err) {
      setStatus(`No camera (${err.name}): drop an image or open one instead.`, true);
      return;
    }
    video.srcObject = stream;
    await video.play();
    running = true;
    stamps = [];
    state.mode = "camera";
    button.textContent = "Stop camera";
    setStatus("Camera on: every frame goes to POST /v1/poses.");
    cameraLoop();
  }

  function stopCamera() {
    running = false;
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
    video.srcObject = null;
    state.mode = "idle";
    state.fps = 0;
    button.textContent = "Start camera";
  }

  async function showImage(file) {
    stopCamera();
    if (!/^image\/(jpeg|png|webp)$/.test(file.type)) {
      setStatus(`${file.name || "That file"} is not a JPEG, PNG or WebP image.`, true);
      return;
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch (err) {
      setStatus(`Cannot read ${file.name}: ${err.message}`, true);
      return;
    }
    // The pixels drawn are the pixels sent, EXIF rotation applied (as the server and the command line apply it).
    grab.width = bitmap.width;
    grab.height = bitmap.height;
    grabCtx.drawImage(bitmap, 0, 0);
    bitmap.close();
    state.mode = "image";
    setStatus(`Sending ${file.name}\u2026`);
    const start = performance.now();
    try {
      const result = await postImage(await encode(grab, "image/jpeg", 0.92));
      render(grab, result, performance.now() - start);
      setStatus(`${file.name}: ${result.faces.length} face(s). Start the camera for live poses.`);
    } catch (err) {
      setStatus(`${file.name}: ${err.message}`, true);
    }
  }

  function setupDrop() {
    const stage = $("stage");
    const over = (e) => {
      e.preventDefault();
      stage.classList.add("dragging");
    };
    const leave = () => stage.classList.remove("dragging");
    document.addEventListener("dragover", over);
    document.addEventListener("dragleave", leave);
    document.addEventListener("drop", (e) => {
      e.preventDefault();
      leave();
      const file = e.dataTransfer && e.dataTransfer.files[0];
      if (file) showImage(file);
    });
    $("file-input").addEventListener("change", (e) => {
      const file = e.target.files[0];
      if (file) showImage(file);
      e.target.value = "";
    });
  }

  async function showModel() {
    try {
      const info = await (await fetch("/v1/models")).json();
      const m = info.models[0];
      state.model = m;
      $("model").textContent = `model ${m.name} (${m.file}, ${m.input_size}px, sha256 ${m.sha256}), qa-headpose ${info.version}`;
    } catch (err) {
      setStatus(`The server does not answer: ${err.message}`, true);
    }
  }

  button.addEventListener("click", () => (running ? stopCamera() : startCamera()));
  setupDrop();
  showModel();
  startCamera();
})();
