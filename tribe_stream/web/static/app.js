// The live cortex in plain WebGL 2 (docs/WEB.md): the mesh, views and colormaps come from the
// server (tribe_stream/surface), predictions over the WebSocket, latest-only. The fragment
// shader mirrors tribe_stream/surface/colors.py map_colors; the colour limits arrive with each
// prediction (the server computes them as the desktop viewer does).

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const base = location.pathname.replace(/[^/]*$/, "");

// What the page shows, exposed for tests and tools/bench_web_fps.py.
const state = (window.tribe = {
  ready: false, received: 0, drawn: 0, draws: 0, passedOver: 0, waiting: false, rejected: {},
  second: null, header: null, limits: null, shownSecond: null, latency: null,
  metadata: null, status: null, roi: null, capture: null, connected: false,
  subcortical: null, structures: null,
  frameTimes: [], continuous: params.get("continuous") === "1",
});

const CORTEX_VERT = `#version 300 es
in vec3 a_pos; in vec3 a_normal; in float a_gray; in float a_value;
uniform vec3 u_right, u_up, u_centre; uniform vec2 u_half; uniform float u_depth;
out float v_gray, v_value, v_shade, v_spec;
void main() {
  vec3 p = a_pos - u_centre;
  vec3 eye = cross(u_right, u_up);             // towards the viewer
  gl_Position = vec4(dot(p, u_right) / u_half.x, dot(p, u_up) / u_half.y, -dot(p, eye) / u_depth, 1.0);
  vec3 n = a_normal; if (dot(n, eye) < 0.0) n = -n;
  float d = max(dot(n, eye), 0.0);             // a headlight, as the desktop viewer
  v_shade = 0.28 + 0.55 * d + 0.25 * d;
  v_spec = pow(d, 32.0) * 0.12;
  v_gray = a_gray; v_value = a_value;
}`;

// surface/colors.py map_colors: the colormap above the threshold, the sulcal grey elsewhere.
const CORTEX_FRAG = `#version 300 es
precision highp float;
uniform sampler2D u_lut; uniform vec3 u_lim; uniform bool u_diverging, u_active;
in float v_gray, v_value, v_shade, v_spec;
out vec4 color;
void main() {
  vec3 base = vec3(v_gray);
  float v = v_value, vmin = u_lim.x, vmax = u_lim.y, threshold = u_lim.z;
  if (u_active && (u_diverging ? abs(v) > threshold : v > threshold)) {
    float f = clamp((v - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0);
    base = texelFetch(u_lut, ivec2(int(floor(f * 255.0 + 0.5)), 0), 0).rgb;
  }
  color = vec4(min(base * v_shade + v_spec, vec3(1.0)), 1.0);
}`;

// A cross-fade between two finished pictures: what every frame between predictions costs.
const BLEND_VERT = `#version 300 es
in vec2 a_corner; out vec2 v_uv;
void main() { v_uv = 0.5 * a_corner + 0.5; gl_Position = vec4(a_corner, 0.0, 1.0); }`;
const BLEND_FRAG = `#version 300 es
precision mediump float;
uniform sampler2D u_prev, u_cur; uniform float u_fade;
in vec2 v_uv; out vec4 color;
void main() { color = mix(texture(u_prev, v_uv), texture(u_cur, v_uv), u_fade); }`;

let scene, gl, cortex, blend, valueBuf, cortexVao, blendVao, ws;
const luts = {};      // colormap name -> {texture, rgba}
let pending = null;   // newest prediction not yet on screen
let shown = null;     // {values, limits, cmap} now on screen
let pictures = [];    // two [framebuffer, texture] targets: the picture fading out, the new one
let fadeStart = 0, fading = false, dirty = true, transition = 0, intervals = [];

const settings = {
  view: params.get("view"), cmap: params.get("cmap"),
  threshold_pct: params.has("threshold") ? Number(params.get("threshold")) : null,
};

function program(vsrc, fsrc, uniforms) {
  const compile = (type, src) => {
    const sh = gl.createShader(type);
    gl.shaderSource(sh, src);
    gl.compileShader(sh);
    if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(sh));
    return sh;
  };
  const prog = gl.createProgram();
  gl.attachShader(prog, compile(gl.VERTEX_SHADER, vsrc));
  gl.attachShader(prog, compile(gl.FRAGMENT_SHADER, fsrc));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
  const loc = {};
  for (const name of uniforms) loc[name] = gl.getUniformLocation(prog, name);
  return { prog, loc };
}

function attribute(prog, name, data, size, usage = gl.STATIC_DRAW) {
  const buf = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, buf);
  gl.bufferData(gl.ARRAY_BUFFER, data, usage);
  const at = gl.getAttribLocation(prog, name);
  gl.enableVertexAttribArray(at);
  gl.vertexAttribPointer(at, size, gl.FLOAT, false, 0, 0);
  return buf;
}

function setupGL(mesh) {
  gl = $("cortex").getContext("webgl2", { antialias: false, depth: false });
  if (!gl) throw new Error("this browser has no WebGL 2");
  cortex = program(CORTEX_VERT, CORTEX_FRAG,
    ["u_right", "u_up", "u_centre", "u_half", "u_depth", "u_lut", "u_lim", "u_diverging", "u_active"]);
  blend = program(BLEND_VERT, BLEND_FRAG, ["u_prev", "u_cur", "u_fade"]);
  const n = scene.n_vertices, f = scene.n_faces;
  cortexVao = gl.createVertexArray();
  gl.bindVertexArray(cortexVao);
  attribute(cortex.prog, "a_pos", new Float32Array(mesh, 0, 3 * n), 3);
  attribute(cortex.prog, "a_normal", new Float32Array(mesh, 12 * n, 3 * n), 3);
  attribute(cortex.prog, "a_gray", new Float32Array(mesh, 24 * n, n), 1);
  valueBuf = attribute(cortex.prog, "a_value", new Float32Array(n), 1, gl.DYNAMIC_DRAW);
  gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, gl.createBuffer());
  gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, new Uint32Array(mesh, 28 * n, 3 * f), gl.STATIC_DRAW);
  blendVao = gl.createVertexArray();
  gl.bindVertexArray(blendVao);
  attribute(blend.prog, "a_corner", new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), 2);
  gl.bindVertexArray(null);
}

function resizePictures() {
  // The canvas at its displayed size, and two offscreen pictures (colour + depth) as large.
  const canvas = gl.canvas, dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width === w && canvas.height === h && pictures.length) return false;
  canvas.width = w;
  canvas.height = h;
  for (const [fb, tex, depth] of pictures) {
    gl.deleteFramebuffer(fb); gl.deleteTexture(tex); gl.deleteRenderbuffer(depth);
  }
  pictures = [0, 1].map(() => {
    const tex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.texStorage2D(gl.TEXTURE_2D, 1, gl.RGBA8, w, h);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    const depth = gl.createRenderbuffer();
    gl.bindRenderbuffer(gl.RENDERBUFFER, depth);
    gl.renderbufferStorage(gl.RENDERBUFFER, gl.DEPTH_COMPONENT24, w, h);
    const fb = gl.createFramebuffer();
    gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, tex, 0);
    gl.framebufferRenderbuffer(gl.FRAMEBUFFER, gl.DEPTH_ATTACHMENT, gl.RENDERBUFFER, depth);
    return [fb, tex, depth];
  });
  return true;
}

async function lut(name) {
  if (!luts[name]) {
    const rgba = new Uint8Array(await (await fetch(`${base}lut/${name}.bin`)).arrayBuffer());
    const texture = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, texture);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, scene.lut_size, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, rgba);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    luts[name] = { texture, rgba };
  }
  return luts[name];
}

// ----- drawing -----

function renderCortex(target) {
  // Every panel of the view into one offscreen picture (the expensive part: once per change).
  const [fb] = target;
  const w = gl.canvas.width, h = gl.canvas.height;
  gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
  gl.useProgram(cortex.prog);
  gl.bindVertexArray(cortexVao);
  gl.enable(gl.DEPTH_TEST);
  gl.enable(gl.CULL_FACE);  // FreeSurfer faces wind counter-clockwise seen from outside
  gl.disable(gl.SCISSOR_TEST);
  gl.viewport(0, 0, w, h);
  gl.clearColor(0, 0, 0, 1);
  gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
  const L = cortex.loc;
  const active = shown !== null && !!luts[shown.cmap];
  gl.uniform1i(L.u_active, active ? 1 : 0);
  gl.uniform1f(L.u_depth, 400.0);
  // always a colormap on the sampler's unit (never a picture: that would be a feedback loop)
  gl.activeTexture(gl.TEXTURE0);
  gl.bindTexture(gl.TEXTURE_2D, (active ? luts[shown.cmap] : Object.values(luts)[0]).texture);
  gl.uniform1i(L.u_lut, 0);
  if (active) {
    const { vmin, vmax, threshold } = shown.limits;
    gl.uniform3f(L.u_lim, vmin, vmax, threshold);
    gl.uniform1i(L.u_diverging, scene.colormaps[shown.cmap].diverging ? 1 : 0);
  }
  const view = scene.views[settings.view];
  const [rows, cols] = view.grid;
  const pw = Math.floor(w / cols), ph = Math.floor(h / rows);
  view.panels.forEach((p, i) => {
    gl.viewport((i % cols) * pw, h - (Math.floor(i / cols) + 1) * ph, pw, ph);
    const aspect = pw / ph;
    const half = p.width / p.height > aspect
      ? [p.width / 2, p.width / 2 / aspect] : [(p.height / 2) * aspect, p.height / 2];
    gl.uniform3fv(L.u_right, p.right);
    gl.uniform3fv(L.u_up, p.up);
    gl.uniform3fv(L.u_centre, p.centre);
    gl.uniform2fv(L.u_half, half);
    const [start, count] = scene.faces[p.hemi];
    gl.drawElements(gl.TRIANGLES, 3 * count, gl.UNSIGNED_INT, 12 * start);
  });
  gl.bindVertexArray(null);
  state.draws += 1;
}

function present(fade) {
  // The canvas: the old picture blended into the new one.
  gl.bindFramebuffer(gl.FRAMEBUFFER, null);
  gl.viewport(0, 0, gl.canvas.width, gl.canvas.height);
  gl.disable(gl.DEPTH_TEST);
  gl.disable(gl.CULL_FACE);
  gl.useProgram(blend.prog);
  gl.bindVertexArray(blendVao);
  gl.activeTexture(gl.TEXTURE0);
  gl.bindTexture(gl.TEXTURE_2D, pictures[0][1]);
  gl.activeTexture(gl.TEXTURE1);
  gl.bindTexture(gl.TEXTURE_2D, pictures[1][1]);
  gl.uniform1i(blend.loc.u_prev, 0);
  gl.uniform1i(blend.loc.u_cur, 1);
  gl.uniform1f(blend.loc.u_fade, fade);
  gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
  gl.bindVertexArray(null);
}

function placeLabels() {
  const view = scene.views[settings.view];
  const [rows, cols] = view.grid;
  $("labels").innerHTML = "";
  view.panels.forEach((p, i) => {
    const d = document.createElement("div");
    d.textContent = p.label;
    // the last column's name in its right corner: none at the middle, where the banner is
    if (cols > 1 && i % cols === cols - 1) d.style.right = "1%";
    else d.style.left = `${(100 * (i % cols)) / cols + 1}%`;
    d.style.top = `${(100 * Math.floor(i / cols)) / rows + 1}%`;
    $("labels").appendChild(d);
  });
}

function take() {
  // Latest-only: the newest waiting prediction becomes the picture on screen.
  const p = pending;
  pending = null;
  state.waiting = false;
  shown = { values: p.values, limits: p.header.relay.limits, cmap: p.header.relay.cmap };
  gl.bindBuffer(gl.ARRAY_BUFFER, valueBuf);
  gl.bufferSubData(gl.ARRAY_BUFFER, 0, shown.values);
  state.header = p.header;
  state.second = p.header.second;
  state.limits = shown.limits;
  return p;
}

function frame(now) {
  if (resizePictures()) { dirty = true; fading = false; }
  let arrived = null;
  if (pending && luts[pending.header.relay.cmap]) arrived = take();
  if (arrived) {
    pictures.reverse();  // the picture on screen fades out; the new one is drawn over the other
    renderCortex(pictures[1]);
    // fades never outlast 0.8 x the interval between predictions (as the desktop viewer)
    if (state.lastShown) intervals = [...intervals.slice(-9), (now - state.lastShown) / 1000];
    state.lastShown = now;
    const gap = intervals.length ? [...intervals].sort((a, b) => a - b)[intervals.length >> 1] : Infinity;
    transition = Math.min(scene.transition_s, 0.8 * gap);
    fadeStart = now;
    fading = transition > 0.02 && state.drawn > 0;
  } else if (dirty || state.continuous) {
    renderCortex(pictures[1]);  // a change of view or size shows at once (continuous: baseline)
    if (dirty) fading = false;
  }
  if (arrived || dirty || fading || state.continuous) {
    const fade = fading ? Math.min(1, (now - fadeStart) / 1000 / transition) : 1;
    present(fade);
    fading = fade < 1;
    dirty = false;
    state.presents = (state.presents || 0) + 1;
  }
  if (arrived) {
    state.drawn += 1;
    state.shownSecond = arrived.header.second;
    // end-to-end: the stream's part when relayed, plus our wait until this frame
    const r = arrived.header.relay;
    state.latency = r.latency_s === null ? null : r.latency_s + (performance.now() - arrived.recv) / 1000;
    state.latencyRef = r.latency_ref;
    colorbar();
  }
  state.frameTimes.push(now);
  while (state.frameTimes.length && now - state.frameTimes[0] > 1000) state.frameTimes.shift();
  state.fps = state.frameTimes.length;
  hud(now);
  requestAnimationFrame(frame);
}

// ----- text around the cortex -----

let hudTime = 0;
function hud(now) {
  if (now - hudTime < 250) return;
  hudTime = now;
  const h = state.header;
  const stale = state.lastArrival && now - state.lastArrival > 5000;
  $("banner").textContent = !state.connected ? `waiting for the server…`
    : !h ? (state.status ? "connected, waiting for the first prediction" : `waiting for stream\n${scene.url}`)
    : stale ? `stream silent for ${Math.round((now - state.lastArrival) / 1000)} s` : "";
  if (!h) { $("hud").textContent = `no prediction yet  |  ${state.fps} fps`; return; }
  const r = h.relay;
  const parts = h.model && h.model.untrained ? ["UNTRAINED demo weights"] : [];
  parts.push(`second ${h.second}`, `stimulus ${h.stimulus[0].toFixed(1)}-${h.stimulus[1].toFixed(1)} s`,
    `BOLD ${h.bold_time.toFixed(1)} s`);
  if (state.latency !== null) {
    parts.push(`latency ${Math.round(state.latency * 1000)} ms${state.latencyRef === "stimulus end" ? "" : ` (${state.latencyRef})`}`);
  }
  parts.push(`${r.drops}  lost ${r.lost}  skipped ${r.skipped + state.passedOver}`, `${state.fps} fps`);
  $("hud").textContent = parts.join("  |  ");
}

function colorbar() {
  const c = $("cb"), ctx = c.getContext("2d");
  const look = shown;
  if (!look || !luts[look.cmap]) return;
  const { vmin, vmax, threshold } = look.limits;
  const div = scene.colormaps[look.cmap].diverging;
  const img = ctx.createImageData(256, 1);
  const rgba = luts[look.cmap].rgba;
  for (let i = 0; i < 256; i++) {
    const v = vmin + ((vmax - vmin) * i) / 255;
    const hidden = div ? Math.abs(v) <= threshold : v <= threshold;
    for (let k = 0; k < 4; k++) img.data[4 * i + k] = hidden ? (k === 3 ? 255 : 110) : rgba[4 * i + k];
  }
  ctx.putImageData(img, 0, 0);
  ctx.drawImage(c, 0, 0, 256, 1, 0, 0, 256, 12);
  $("cb-min").textContent = vmin.toFixed(2);
  $("cb-max").textContent = vmax.toFixed(2);
}

function roiBars() {
  const names = state.metadata?.regions?.names;
  if (!names || !state.roi) return;
  $("roi").hidden = false;
  $("roi-second").textContent = state.roi.second;
  const c = $("roi-bars"), ctx = c.getContext("2d");
  const vals = state.roi.values;
  const order = vals.map((v, i) => i).filter((i) => vals[i] !== null)
    .sort((a, b) => Math.abs(vals[b]) - Math.abs(vals[a])).slice(0, 12);
  state.roi.shown = order.map((i) => names[i]);
  const top = Math.max(1e-12, ...order.map((i) => Math.abs(vals[i])));
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.font = "12px system-ui";
  const rowH = c.height / 12, mid = 200;
  order.forEach((i, row) => {
    const len = (Math.abs(vals[i]) / top) * (c.width - mid - 50);
    ctx.fillStyle = vals[i] >= 0 ? "#e8603c" : "#3c8ce8";
    ctx.fillRect(mid, row * rowH + 3, len, rowH - 6);
    ctx.fillStyle = "#ddd";
    ctx.fillText(names[i].slice(0, 28), 4, row * rowH + rowH - 7);
    ctx.fillText(vals[i].toFixed(2), mid + len + 4, row * rowH + rowH - 7);
  });
}

// The subcortical head: its three slices, drawn by the server in this page's colormap
// (tribe_stream/viewer/slices.py), and its structure means, largest |mean| first.
function volumeSlices(msg) {
  $("volume").hidden = false;
  state.subcortical = { second: msg.second, error: msg.error ?? null, drawn: false };
  $("volume-caption").textContent = msg.error ? `subcortical not drawn: ${msg.error}` : msg.caption;
  if (msg.error) return;
  const c = $("volume-slices");
  c.width = msg.width;
  c.height = msg.height;
  const bytes = Uint8ClampedArray.from(atob(msg.rgba), (ch) => ch.charCodeAt(0));
  c.getContext("2d").putImageData(new ImageData(bytes, msg.width, msg.height), 0, 0);
  Object.assign(state.subcortical, { drawn: true, structure: msg.structure, columns: msg.columns });
  dirty = true;  // the cortex's canvas got smaller
}

function structureMeans(msg) {
  const names = state.metadata?.spaces?.subcortical?.regions?.names;
  state.structures = msg;
  if (!names) return;
  const order = msg.values.map((v, i) => i).filter((i) => msg.values[i] !== null)
    .sort((a, b) => Math.abs(msg.values[b]) - Math.abs(msg.values[a])).slice(0, 5);
  msg.shown = order.map((i) => names[i]);
  $("structures").textContent = order.map((i) => `${names[i].padEnd(26)} ${msg.values[i].toFixed(2)}`).join("\n");
}

// ----- the WebSocket -----

function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
}

function sendSettings() {
  send({ type: "settings", cmap: settings.cmap, threshold_pct: settings.threshold_pct });
}

function onMessage(ev) {
  if (typeof ev.data === "string") {
    const msg = JSON.parse(ev.data);
    if (msg.type === "meta") state.metadata = msg.metadata;
    else if (msg.type === "status") state.status = msg;
    else if (msg.type === "roi") { state.roi = msg; roiBars(); }
    else if (msg.type === "subcortical") volumeSlices(msg);
    else if (msg.type === "structures") structureMeans(msg);
    else if (msg.type === "rejected") { state.rejected[msg.reason] = msg.count; console.warn("server dropped a message:", msg.detail); }
    else if (msg.type === "capture") window.dispatchEvent(new CustomEvent("tribe-capture", { detail: msg }));
    return;
  }
  const buf = ev.data, dv = new DataView(buf);
  if (buf.byteLength < 8 || dv.getUint32(0, false) !== 0x50524544) return;  // "PRED"
  const len = dv.getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, len)));
  const offset = 8 + len + ((4 - ((8 + len) % 4)) % 4);
  // a second never drawn is passed over; the same second again (resent in a new look after a
  // settings change) only replaces its older look
  if (pending && pending.header.second !== header.second) state.passedOver += 1;
  pending = { header, values: new Float32Array(buf, offset, scene.n_vertices), recv: performance.now() };
  state.received += 1;
  state.waiting = true;
  state.lastArrival = performance.now();
  lut(header.relay.cmap);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}${base}ws`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { state.connected = true; sendSettings(); window.dispatchEvent(new Event("tribe-open")); };
  ws.onmessage = onMessage;
  ws.onclose = () => { state.connected = false; setTimeout(connect, 1000); };
}

// ----- controls -----

function controls() {
  const view = $("view"), cmap = $("cmap"), thr = $("threshold");
  for (const name of Object.keys(scene.views)) view.add(new Option(name, name));
  for (const name of Object.keys(scene.colormaps)) cmap.add(new Option(name, name));
  view.value = settings.view;
  cmap.value = settings.cmap;
  thr.value = settings.threshold_pct;
  $("threshold-value").textContent = `${settings.threshold_pct}%`;
  view.onchange = () => { settings.view = view.value; placeLabels(); dirty = true; };
  cmap.onchange = async () => { settings.cmap = cmap.value; await lut(settings.cmap); sendSettings(); };
  thr.oninput = () => { settings.threshold_pct = Number(thr.value); $("threshold-value").textContent = `${thr.value}%`; sendSettings(); };
  window.addEventListener("resize", () => { dirty = true; });
  const keys = { 1: "left", 2: "right", 3: "medial", 4: "dorsal", 5: "ventral", 6: "both",
    l: "left", r: "right", m: "medial", d: "dorsal", v: "ventral", b: "both" };
  window.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (keys[e.key] && scene.views[keys[e.key]]) { view.value = keys[e.key]; view.onchange(); }
  });
}

async function main() {
  scene = state.scene = await (await fetch(`${base}scene.json`)).json();
  const d = scene.defaults;
  settings.view = scene.views[settings.view] ? settings.view : d.view;
  settings.cmap = scene.colormaps[settings.cmap] ? settings.cmap : d.cmap;
  if (settings.threshold_pct === null || !(settings.threshold_pct >= 0 && settings.threshold_pct <= 100)) {
    settings.threshold_pct = d.threshold_pct;
  }
  scene.transition_s = params.has("transition") ? Number(params.get("transition")) : d.transition_s;
  const mesh = await (await fetch(`${base}mesh.bin`)).arrayBuffer();
  setupGL(mesh);
  await lut(settings.cmap);
  controls();
  placeLabels();
  connect();
  if (scene.capture) {
    const { setupCapture } = await import("./capture.js");
    setupCapture({ socket: () => ws, state });
  }
  state.ready = true;
  requestAnimationFrame(frame);
}

main().catch((e) => { $("banner").textContent = `cannot start: ${e.message}`; state.error = String(e); });
