// Headcast render node page: spectator frames (JPEG over a WebSocket), the stream table and the
// per-stage latency plot. Read-only: the only messages sent are frame acknowledgements and
// clock pings (xr_runtime/web/server.py documents the protocol).
"use strict";

const HEADER_BYTES = 56;
const COLORS = {
  features: "#4e79a7", send: "#f28e2b", network: "#e15759", queue: "#76b7b2", inference: "#59a14f",
  upload: "#edc948", submit: "#b07aa1", display: "#ff9da7", end_to_end: "#ffffff",
};

// State the browser test reads (tests/test_web_view.py).
const hc = window.headcast = {
  connected: false, framesShown: 0, lastSeq: 0, frameSize: [0, 0], statusUpdates: 0,
  plotUpdates: 0, plotPoints: 0, latencyWindow: null, lastStatus: null, clockOffsetMs: null,
  rttMs: null, closedReason: null,
};

const spectator = document.getElementById("spectator");
const sctx = spectator.getContext("2d");
const plot = document.getElementById("latency-plot");
const pctx = plot.getContext("2d");
const series = {};            // name -> {t: [], v: []}
let windowS = 30;
let latestT = 0;
let ws = null;
let bestRtt = Infinity;
let decoding = false;
let pendingFrame = null;

function serverNowNs(localMs) {
  return hc.clockOffsetMs === null ? null : Math.round((localMs + hc.clockOffsetMs) * 1e6);
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${proto}//${location.host}/ws${location.search}`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    hc.connected = true;
    badge("live", "live");
    for (let i = 0; i < 5; i++) setTimeout(ping, 50 * i);
  };
  ws.onclose = (ev) => {
    hc.connected = false;
    hc.closedReason = ev.reason || `closed (${ev.code})`;
    badge("down", "disconnected — reload to retry");
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") onText(JSON.parse(ev.data));
    else onFrame(ev.data);
  };
}

function badge(cls, text) {
  const el = document.getElementById("connection");
  el.className = `badge ${cls}`;
  el.textContent = text;
}

function ping() {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping", t: performance.now() }));
}
setInterval(ping, 2000);

function onText(msg) {
  if (msg.type === "pong") {
    const now = performance.now();
    const rtt = now - msg.t;
    // The shortest round trip bounds the offset error best (NTP's rule); let it age slowly.
    bestRtt *= 1.02;
    if (rtt <= bestRtt) {
      bestRtt = rtt;
      hc.rttMs = rtt;
      hc.clockOffsetMs = msg.server_ns / 1e6 - (msg.t + now) / 2;
    }
  } else if (msg.type === "hello") {
    if (msg.backlog) addPoints(msg.backlog);
    if (msg.status) onStatus(msg.status, false);
  } else if (msg.type === "status") {
    onStatus(msg, true);
  }
}

// ------------------------------------------------------------------ frames
function onFrame(buf) {
  // Decode one frame at a time; a newer frame arriving meanwhile replaces the waiting one.
  if (decoding) {
    if (pendingFrame) ack(parseHeader(pendingFrame).seq, null);
    pendingFrame = buf;
    return;
  }
  show(buf);
}

function parseHeader(buf) {
  const dv = new DataView(buf, 0, HEADER_BYTES);
  return {
    seq: dv.getUint32(4, true), width: dv.getUint16(8, true), height: dv.getUint16(10, true),
    index: dv.getUint32(12, true), displayNs: Number(dv.getBigInt64(16, true)),
    grabbedNs: Number(dv.getBigInt64(24, true)), encodedNs: Number(dv.getBigInt64(32, true)),
    sentNs: Number(dv.getBigInt64(40, true)),
  };
}

function show(buf) {
  const h = parseHeader(buf);
  decoding = true;
  createImageBitmap(new Blob([new Uint8Array(buf, HEADER_BYTES)], { type: "image/jpeg" })).then((bitmap) => {
    if (spectator.width !== h.width || spectator.height !== h.height) {
      spectator.width = h.width;
      spectator.height = h.height;
    }
    sctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    const shown = performance.now();
    hc.framesShown += 1;
    hc.lastSeq = h.seq;
    hc.frameSize = [h.width, h.height];
    const shownNs = serverNowNs(shown);
    ack(h.seq, shownNs);
    if (shownNs !== null) {
      document.getElementById("view-info").textContent =
        `frame ${h.index} (${h.width}×${h.height}), eye drawn → shown ${((shownNs - h.grabbedNs) / 1e6).toFixed(1)} ms`;
    }
  }).catch(() => ack(h.seq, null)).finally(() => {
    decoding = false;
    if (pendingFrame) {
      const next = pendingFrame;
      pendingFrame = null;
      show(next);
    }
  });
}

function ack(seq, shownNs) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "shown", seq, shown_server_ns: shownNs }));
}

// ------------------------------------------------------------------ status
function onStatus(msg, fresh) {
  hc.lastStatus = msg;
  if (fresh) hc.statusUpdates += 1;
  const r = msg.render || {};
  document.getElementById("render-rate").textContent = `render ${(r.fps || 0).toFixed(1)} fps` +
    (r.stage_ms && r.stage_ms.frame !== undefined ? `, frame ${r.stage_ms.frame.toFixed(2)} ms` : "");
  if (msg.web) document.getElementById("viewers").textContent = `${msg.web.viewers} watching`;
  if (r.stage_ms) {
    document.getElementById("render-stages").textContent = "render loop (recent mean, ms): " +
      Object.entries(r.stage_ms).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(" · ");
  }
  if (msg.streams) streamsTable(msg.streams);
  if (msg.latency) {
    windowS = msg.latency.window_s || windowS;
    document.getElementById("window-s").textContent = windowS;
    latestT = Math.max(latestT, msg.t_s || 0);
    if (fresh) addPoints(msg.latency.points);
    hc.latencyWindow = msg.latency.window;
    latencyTable(msg.latency.window);
    drawPlot();
  }
}

function streamsTable(st) {
  document.getElementById("streams-summary").textContent = st.summary;
  const head = document.querySelector("#streams-table thead");
  if (!head.childElementCount) {
    const tr = document.createElement("tr");
    for (const [, title] of st.columns) {
      const th = document.createElement("th");
      th.textContent = title;
      tr.appendChild(th);
    }
    head.appendChild(tr);
  }
  const body = document.querySelector("#streams-table tbody");
  body.replaceChildren(...st.rows.map((row) => {
    const tr = document.createElement("tr");
    for (const [key] of st.columns) {
      const td = document.createElement("td");
      td.textContent = row[key];
      tr.appendChild(td);
    }
    return tr;
  }));
  if (!st.rows.length) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = st.columns.length;
    td.textContent = "(no streams yet)";
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

function latencyTable(win) {
  const body = document.querySelector("#latency-table tbody");
  body.replaceChildren(...Object.entries(win).map(([name, s]) => {
    const tr = document.createElement("tr");
    const cells = [name, fmt(s.p50), fmt(s.p99), String(s.n)];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 0) td.style.color = COLORS[name] || "#ccc";
      tr.appendChild(td);
    });
    return tr;
  }));
}

function fmt(v) { return v === null || v === undefined ? "–" : v.toFixed(2); }

function addPoints(points) {
  if (!points || !points.t_s) return;
  for (const [name, values] of Object.entries(points)) {
    if (name === "t_s") continue;
    const s = series[name] || (series[name] = { t: [], v: [] });
    for (let i = 0; i < values.length; i++) {
      s.t.push(points.t_s[i]);
      s.v.push(values[i]);
    }
  }
  if (points.t_s.length) latestT = Math.max(latestT, points.t_s[points.t_s.length - 1]);
  const horizon = latestT - windowS;
  let count = 0;
  for (const s of Object.values(series)) {
    let cut = 0;
    while (cut < s.t.length && s.t[cut] < horizon) cut++;
    if (cut) { s.t.splice(0, cut); s.v.splice(0, cut); }
    count = Math.max(count, s.t.length);
  }
  hc.plotPoints = count;
}

// ------------------------------------------------------------------ plot
function drawPlot() {
  const w = plot.width, h = plot.height, left = 44, bottom = 22, top = 8, right = 8;
  pctx.clearRect(0, 0, w, h);
  const e2e = series.end_to_end ? series.end_to_end.v : [];
  let ymax = 10;
  for (const v of e2e) ymax = Math.max(ymax, v);
  ymax = niceCeil(ymax * 1.1);
  const x0 = latestT - windowS;
  const X = (t) => left + ((t - x0) / windowS) * (w - left - right);
  const Y = (v) => h - bottom - (Math.min(v, ymax) / ymax) * (h - bottom - top);
  pctx.strokeStyle = "#2c3039";
  pctx.fillStyle = "#9aa4b2";
  pctx.font = "11px system-ui, sans-serif";
  pctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    pctx.beginPath(); pctx.moveTo(left, Y(v)); pctx.lineTo(w - right, Y(v)); pctx.stroke();
    pctx.fillText(v.toFixed(0), 4, Y(v) + 4);
  }
  for (let s = 0; s <= windowS; s += 5) pctx.fillText(`-${windowS - s}s`, X(x0 + s) - 10, h - 6);
  for (const [name, s] of Object.entries(series)) {
    if (!s.t.length) continue;
    pctx.strokeStyle = COLORS[name] || "#888";
    pctx.lineWidth = name === "end_to_end" ? 2 : 1;
    pctx.beginPath();
    s.t.forEach((t, i) => (i ? pctx.lineTo(X(t), Y(s.v[i])) : pctx.moveTo(X(t), Y(s.v[i]))));
    pctx.stroke();
  }
  const win = hc.latencyWindow && hc.latencyWindow.end_to_end;
  if (win && win.p50 !== null) {
    for (const [q, dash] of [["p50", [6, 4]], ["p99", [2, 3]]]) {
      pctx.setLineDash(dash);
      pctx.strokeStyle = "#ffffff";
      pctx.beginPath(); pctx.moveTo(left, Y(win[q])); pctx.lineTo(w - right, Y(win[q])); pctx.stroke();
      pctx.fillText(`end to end ${q} ${win[q].toFixed(1)}`, w - right - 150, Y(win[q]) - 3);
    }
    pctx.setLineDash([]);
  }
  hc.plotUpdates += 1;
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

connect();
