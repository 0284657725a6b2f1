// bfx live dashboard: the metrics stream (SSE, GET metrics/stream) and the change feed
// (SSE, GET changes/stream), both through EventSource. Nothing is fetched from
// anywhere but this server. URLs are relative to the page (/api/v1/dashboard), so the
// page works under any mount point. A credential, when the server requires one, is kept
// in sessionStorage (this tab only) and sent as X-API-Key on fetch() and as
// ?access_token= on the streams (EventSource cannot send headers).
"use strict";

(() => {
  const KEY_STORE = "bfx.key";
  const HISTORY = 120; // chart points (seconds)
  const CHANGES_SHOWN = 20;
  const $ = (id) => document.getElementById(id);
  let key = sessionStorage.getItem(KEY_STORE) || "";
  let metricsSource = null;
  let changesSource = null;
  let changesStarted = false;
  let previous = null;
  const rates = [];
  const changes = [];

  const url = (path, params) => {
    const u = new URL(path, window.location.href);
    for (const [name, value] of Object.entries(params || {})) u.searchParams.set(name, String(value));
    if (key && path.includes("stream")) u.searchParams.set("access_token", key);
    return u.toString();
  };
  const headers = () => (key ? { "X-API-Key": key, Accept: "application/json" } : { Accept: "application/json" });

  function setStatus(kind, text) {
    const el = $("status");
    el.className = `status ${kind}`;
    el.textContent = text;
  }

  const fmtInt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms < 1) return ms.toFixed(3);
    if (ms < 100) return ms.toFixed(2);
    return Math.round(ms).toLocaleString("en-US");
  }
  const fmtRate = (r) => (r < 10 ? r.toFixed(2) : r < 1000 ? r.toFixed(1) : Math.round(r).toLocaleString("en-US"));
  function fmtUptime(s) {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
  }
  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }
  function fillRows(body, rows, columns) {
    body.replaceChildren();
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.appendChild(cell("none yet", "empty")).colSpan = columns;
      body.appendChild(tr);
      return;
    }
    for (const values of rows) {
      const tr = document.createElement("tr");
      for (const [text, cls] of values) tr.appendChild(cell(text, cls));
      body.appendChild(tr);
    }
  }

  function render(m) {
    // Requests per second between two ticks (every worker's, summed); the first tick
    // shows the last minute's rate.
    let rate = m.requests_per_second_1m;
    if (previous && m.uptime_seconds > previous.uptime_seconds) {
      rate = Math.max(0, (m.total_requests - previous.total_requests) / (m.uptime_seconds - previous.uptime_seconds));
    }
    previous = m;
    rates.push(rate);
    if (rates.length > HISTORY) rates.shift();
    $("rate").textContent = fmtRate(rate);
    $("rate-1m").textContent = fmtRate(m.requests_per_second_1m);
    $("total-requests").textContent = fmtInt(m.total_requests);
    $("p50").textContent = fmtMs(m.p50_response_time_ms);
    $("p95").textContent = fmtMs(m.p95_response_time_ms);
    $("p99").textContent = fmtMs(m.p99_response_time_ms);
    $("error-rate").textContent = `${(100 * m.error_rate).toFixed(2)}%`;
    $("errors-4xx").textContent = fmtInt(m.errors_by_status_class["4xx"]);
    $("errors-5xx").textContent = fmtInt(m.errors_by_status_class["5xx"]);
    $("substrates").textContent = fmtInt(m.total_substrates);
    $("relationships").textContent = fmtInt(m.total_relationships);
    $("invocations").textContent = fmtInt(m.total_invocations);
    $("failed-invocations").textContent = fmtInt(m.failed_invocations);
    $("active").textContent = fmtInt(m.active_requests);
    $("version").textContent = m.version;
    $("workers").textContent = fmtInt(m.workers);
    $("uptime").textContent = fmtUptime(m.uptime_seconds);
    $("storage").textContent = m.storage.backend;
    fillRows(
      $("top-invoked"),
      m.most_invoked_substrates.map((t) => [[t.substrate_id], [fmtInt(t.invocations), "num"]]),
      2,
    );
    drawChart();
    if (!changesStarted) {
      changesStarted = true;
      openChanges(m.storage.change_seq);
    }
  }

  function drawChart() {
    const canvas = $("rate-chart");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (canvas.width !== width * ratio) { canvas.width = width * ratio; canvas.height = height * ratio; }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const top = Math.max(1, ...rates);
    ctx.fillStyle = "#5d6b7c";
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillText(`${fmtRate(top)} /s`, 4, 12);
    ctx.strokeStyle = "#dde2e8";
    ctx.beginPath(); ctx.moveTo(0, height - 0.5); ctx.lineTo(width, height - 0.5); ctx.stroke();
    if (rates.length < 2) return;
    const step = width / (HISTORY - 1);
    const x0 = width - step * (rates.length - 1);
    ctx.strokeStyle = "#2563eb";
    ctx.lineWidth = 2;
    ctx.beginPath();
    rates.forEach((r, i) => {
      const x = x0 + i * step, y = height - 2 - (r / top) * (height - 20);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }

  // --- the metrics stream -------------------------------------------------------------
  async function start() {
    setStatus("connecting", "connecting…");
    let status;
    try {
      status = (await fetch(url("metrics"), { headers: headers() })).status;
    } catch (err) {
      setStatus("down", "server unreachable; retrying");
      setTimeout(start, 3000);
      return;
    }
    if (status === 401 || status === 403) {
      askKey(status === 403 ? "this credential lacks the metrics:read scope" : key ? "this credential was refused" : "");
      return;
    }
    $("key-form").hidden = true;
    openMetrics();
  }

  function openMetrics() {
    if (metricsSource) metricsSource.close();
    const source = new EventSource(url("metrics/stream"));
    metricsSource = source;
    source.addEventListener("metrics", (ev) => {
      setStatus("live", "live");
      render(JSON.parse(ev.data));
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (a 401 after a key change, 503 at the stream bound): probe again.
        setStatus("down", "disconnected; retrying");
        source.close();
        setTimeout(start, 3000);
      } else {
        setStatus("connecting", "reconnecting…"); // EventSource retries by itself
      }
    };
  }

  function askKey(message) {
    setStatus("down", "credential needed");
    $("key-form").hidden = false;
    $("key-error").textContent = message;
    $("key").focus();
  }

  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    key = $("key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE);
    start();
  });

  // --- the change feed ------------------------------------------------------------------
  function showChanges() {
    fillRows(
      $("changes"),
      changes.map((c) => [[fmtInt(c.seq), "num"], [c.op.replaceAll("_", " ")], [String(c.id)]]),
      3,
    );
  }

  function addChange(change) {
    if (changes.some((c) => c.seq === change.seq)) return;
    changes.unshift(change);
    changes.sort((a, b) => b.seq - a.seq);
    changes.length = Math.min(changes.length, CHANGES_SHOWN);
    showChanges();
  }

  async function openChanges(headSeq) {
    // The last CHANGES_SHOWN changes of the log, then the stream from there.
    const since = Math.max(0, (headSeq || 0) - CHANGES_SHOWN);
    let answer;
    try {
      answer = await fetch(url("changes", { since, limit: CHANGES_SHOWN }), { headers: headers() });
    } catch (err) {
      $("changes-status").textContent = "· change feed unreachable";
      return;
    }
    if (answer.status === 404) {
      $("changes-status").textContent = "· change feed unavailable";
      return;
    }
    if (answer.status === 401 || answer.status === 403) {
      $("changes-status").textContent = "· this credential may not read the change feed";
      return;
    }
    if (!answer.ok) {
      $("changes-status").textContent = `· change feed answered ${answer.status}`;
      return;
    }
    const page = await answer.json();
    page.changes.forEach(addChange);
    if (changesSource) changesSource.close();
    const source = new EventSource(url("changes/stream", { since: page.next_since }));
    changesSource = source;
    source.addEventListener("change", (ev) => addChange(JSON.parse(ev.data)));
    source.onopen = () => { $("changes-status").textContent = "· live"; };
    source.onerror = () => {
      $("changes-status").textContent =
        source.readyState === EventSource.CLOSED ? "· change feed unavailable" : "· reconnecting…";
    };
  }

  window.addEventListener("resize", drawChart);
  start();
})();
