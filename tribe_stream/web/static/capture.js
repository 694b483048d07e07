// The browser's camera and microphone to the server (`tribe-stream web --capture`, docs/WEB.md):
// JPEG frames (shortest edge 292 px, FPS a second) and 100 ms runs of float32 samples, each with
// a 16-byte head: tag, sample rate, page time (performance.now(), ms; sound on the audio clock,
// anchored to it once). A frame is skipped, and counted, while the socket still has a backlog.

const FPS = 15, SIZE = 292, AUDIO_RATE = 16000, PACKET_S = 0.1, BACKLOG = 1 << 20;

function head(tag, rate, tMs, payloadBytes) {
  const buf = new ArrayBuffer(16 + payloadBytes);
  const dv = new DataView(buf);
  for (let i = 0; i < 4; i++) dv.setUint8(i, tag.charCodeAt(i));
  dv.setUint32(4, rate, true);
  dv.setFloat64(8, tMs, true);
  return buf;
}

export function setupCapture({ socket, state }) {
  const button = document.getElementById("capture");
  const label = document.getElementById("capture-state");
  const cap = (state.capture = { frames: 0, samples: 0, skipped: 0, accepted: false, error: null });
  const session = `page-${Math.random().toString(36).slice(2, 12)}`;
  let media = null;
  button.hidden = false;

  const start = () => {
    const ws = socket();
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "capture", action: "start", session }));
  };
  window.addEventListener("tribe-open", () => { if (media) start(); });
  window.addEventListener("tribe-capture", (e) => {
    cap.accepted = e.detail.ok && e.detail.capturing;
    label.textContent = cap.accepted ? "capturing" : e.detail.reason || "";
  });

  const sendable = () => {
    const ws = socket();
    return cap.accepted && ws && ws.readyState === WebSocket.OPEN && ws.bufferedAmount < BACKLOG ? ws : null;
  };

  async function video(stream) {
    const el = document.getElementById("preview");
    el.srcObject = stream;
    el.hidden = false;
    await el.play();
    const canvas = document.createElement("canvas");
    const ctx = canvas.getContext("2d");
    let lastSent = -1;
    setInterval(() => {
      if (!el.videoWidth) return;
      const scale = SIZE / Math.min(el.videoWidth, el.videoHeight);
      canvas.width = Math.round(el.videoWidth * scale);
      canvas.height = Math.round(el.videoHeight * scale);
      ctx.drawImage(el, 0, 0, canvas.width, canvas.height);
      const t = performance.now();
      if (!sendable()) { cap.skipped += 1; return; }
      canvas.toBlob(async (blob) => {
        const jpeg = new Uint8Array(await blob.arrayBuffer());
        const ws = sendable();
        // encodings can finish out of order on a busy page: a frame older than one sent is stale
        if (!ws || t <= lastSent) { cap.skipped += 1; return; }
        lastSent = t;
        const buf = head("JPEG", 0, t, jpeg.length);
        new Uint8Array(buf, 16).set(jpeg);
        ws.send(buf);
        cap.frames += 1;
      }, "image/jpeg", 0.85);
    }, 1000 / FPS);
  }

  async function audio(stream) {
    const ctx = new AudioContext({ sampleRate: AUDIO_RATE });
    await ctx.audioWorklet.addModule("static/worklet.js");
    const node = new AudioWorkletNode(ctx, "tribe-capture");
    const silent = ctx.createGain();
    silent.gain.value = 0;
    ctx.createMediaStreamSource(stream).connect(node).connect(silent).connect(ctx.destination);
    const rate = ctx.sampleRate, size = Math.round(rate * PACKET_S);
    const run = new Float32Array(size);
    let n = 0, runFrame = 0, origin = null;  // origin: page time (ms) of audio frame 0
    node.port.onmessage = (e) => {
      const { frame, samples } = e.data;
      if (origin === null) origin = performance.now() - (1000 * (frame + samples.length)) / rate;
      for (let i = 0; i < samples.length;) {
        if (n === 0) runFrame = frame + i;
        const k = Math.min(size - n, samples.length - i);
        run.set(samples.subarray(i, i + k), n);
        n += k; i += k;
        if (n < size) continue;
        const ws = sendable();
        if (ws) {
          const buf = head("PCMF", rate, origin + (1000 * runFrame) / rate, 4 * size);
          new Float32Array(buf, 16).set(run);
          ws.send(buf);
          cap.samples += size;
        }
        n = 0;
      }
    };
    await ctx.resume();
    cap.audioRate = rate;
  }

  button.onclick = async () => {
    button.disabled = true;
    try {
      media = await navigator.mediaDevices.getUserMedia({
        video: { width: 640, height: 480 },
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
      start();
      await Promise.all([video(media), audio(media)]);
      button.textContent = "capturing";
    } catch (e) {
      cap.error = String(e);
      label.textContent = `camera/microphone unavailable: ${e.message}`;
      button.disabled = false;
    }
  };
}
