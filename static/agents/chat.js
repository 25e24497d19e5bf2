// Chat page: streams a run's events over /ws/chat/<agent>/.
// Safety: streamed model text is only ever inserted with textContent; the final answer is replaced by the
// server's sanitised HTML (markdown-it + nh3). Events carry sequence numbers: a gap triggers a "resume".
(function () {
  "use strict";
  const log = document.getElementById("chat");
  if (!log) return;
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-input");
  const send = document.getElementById("chat-send");
  const stop = document.getElementById("chat-cancel");
  const statusEl = document.getElementById("chat-status");
  const clearBtn = document.getElementById("chat-clear");
  const agent = log.dataset.agent;
  let conversationId = log.dataset.conversation || null;

  let socket = null;
  let retry = 0;
  let run = null; // {id, next, pending: Map, bubble, stream, done, gapTimer, silenceTimer}

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function scroll() { log.scrollTop = log.scrollHeight; }
  function setStatus(text) { statusEl.textContent = text; }
  function busy(on) {
    send.disabled = on;
    stop.hidden = !on;
  }
  function csrf() {
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/chat/${encodeURIComponent(agent)}/`);
    socket.onopen = () => {
      retry = 0;
      setStatus(run && !run.done ? "reconnected" : "");
      if (run && !run.done) resume();
    };
    socket.onclose = (ev) => {
      if (ev.code === 4401) { setStatus("Please log in to chat."); return; }
      if (ev.code === 4404) { setStatus("This agent does not exist."); return; }
      setStatus("disconnected; reconnecting…");
      retry = Math.min(retry + 1, 6);
      setTimeout(connect, 250 * 2 ** retry);
    };
    socket.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === "run") onRun(msg);
      else if (msg.type === "event") onEvent(msg.event);
      else if (msg.type === "events") msg.events.forEach(onEvent); // several that a busy server sent together
      else if (msg.type === "error") showError(msg.error);
    };
  }

  function sendJson(obj) {
    if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(obj)); return true; }
    return false;
  }

  function resume() {
    if (!run) return;
    sendJson({ type: "resume", run_id: run.id, after_seq: run.next - 1 });
  }

  function newAssistantBubble() {
    const bubble = el("div", "msg msg-assistant");
    const steps = el("div", "steps");
    const stream = el("div", "streaming");
    bubble.append(steps, stream);
    log.append(bubble);
    return { bubble, steps, stream };
  }

  function onRun(msg) {
    conversationId = msg.conversation_id;
    log.dataset.conversation = conversationId;
    if (history.replaceState) history.replaceState(null, "", `?c=${encodeURIComponent(conversationId)}`);
    const parts = newAssistantBubble();
    run = { id: msg.run_id, next: 1, pending: new Map(), done: false, gapTimer: null, traceId: msg.trace_id, ...parts };
    run.bubble.dataset.run = msg.run_id;
    watchSilence();
    scroll();
  }

  // Live events are not queued for a socket that missed them (pub/sub): a gap shows in the sequence numbers, but
  // a lost last event would not. A run that has been silent for a while asks for what it may have missed.
  const SILENCE_MS = 10000;
  function watchSilence() {
    clearTimeout(run.silenceTimer);
    const current = run;
    current.silenceTimer = setTimeout(() => {
      if (run === current && !current.done) { resume(); watchSilence(); }
    }, SILENCE_MS);
  }

  function onEvent(event) {
    if (!run || event.run_id !== run.id) return;
    if (event.type === "run_started") {
      // the start of an attempt is a baseline: a retried run numbers its events afresh
      if (event.seq > run.next) { run.pending.clear(); run.stream.textContent = ""; run.steps.textContent = ""; }
      run.next = Math.max(run.next, event.seq);
    }
    if (event.seq < run.next || run.pending.has(event.seq)) return; // duplicate (replay overlap)
    watchSilence();
    run.pending.set(event.seq, event);
    while (run.pending.has(run.next)) {
      const next = run.pending.get(run.next);
      run.pending.delete(run.next);
      run.next += 1;
      apply(next);
    }
    if (run.pending.size && !run.done && !run.gapTimer) {
      run.gapTimer = setTimeout(() => { run.gapTimer = null; if (run.pending.size) resume(); }, 300);
    }
  }

  function apply(event) {
    const d = event.data || {};
    switch (event.type) {
      case "run_started":
        busy(true); setStatus("thinking…"); break;
      case "token":
        run.stream.textContent += d.text || ""; scroll(); break;
      case "tool_call":
        run.steps.append(el("div", "tool", `→ ${d.name}(${typeof d.arguments === "string" ? d.arguments : JSON.stringify(d.arguments)})`));
        setStatus(`calling ${d.name}…`); scroll(); break;
      case "tool_result": {
        const text = d.ok ? `← ${d.name}: ${JSON.stringify(d.result)}` : `✗ ${d.name}: ${d.error && d.error.code}: ${d.error && d.error.message}`;
        run.steps.append(el("div", d.ok ? "tool" : "tool failed", text)); scroll(); break;
      }
      case "step":
        if (d.phase === "plan") run.steps.append(el("div", "tool", `plan: ${(d.steps || []).map((s) => s.id + (s.depends_on && s.depends_on.length ? "←" + s.depends_on.join(",") : "")).join("  ")}`));
        else if (d.phase === "replan") run.steps.append(el("div", "tool failed", `re-planning: ${d.reason}`));
        else run.steps.append(el("div", d.status === "failed" ? "tool failed" : "tool", `step ${d.id}: ${d.status}`));
        scroll(); break;
      case "final": {
        const md = el("div", "md");
        md.innerHTML = d.html || ""; // sanitised on the server (markdown-it without HTML, then nh3)
        run.stream.replaceWith(md);
        finish(d); break;
      }
      case "error":
        run.stream.append(el("div", "error", `${d.code}: ${d.message}`));
        finish(d); break;
      default: break;
    }
  }

  function finish(d) {
    run.done = true;
    clearTimeout(run.silenceTimer);
    busy(false);
    setStatus("");
    const meta = el("div", "meta");
    const tokens = (d.input_tokens || 0) + (d.output_tokens || 0);
    meta.append(document.createTextNode(`${tokens} tokens`));
    if (d.cost !== null && d.cost !== undefined) meta.append(document.createTextNode(` · $${Number(d.cost).toFixed(6)}`));
    const traceId = d.trace_id || run.traceId;
    if (traceId) {
      meta.append(document.createTextNode(" · "));
      const link = el("a", "", "trace");
      link.href = `/dashboard/traces/${encodeURIComponent(traceId)}/`;
      meta.append(link);
    }
    run.bubble.append(meta);
    run.bubble.dataset.done = "1";
    scroll();
  }

  function showError(error) {
    const box = el("div", "msg msg-assistant");
    box.append(el("div", "error", `${error.code}: ${error.message}`));
    log.append(box);
    busy(false);
    scroll();
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    if (!sendJson({ type: "message", text, conversation_id: conversationId })) { setStatus("not connected yet"); return; }
    const bubble = el("div", "msg msg-user");
    bubble.append(el("div", "text", text));
    log.append(bubble);
    input.value = "";
    busy(true);
    scroll();
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); }
  });
  stop.addEventListener("click", () => { if (run && !run.done) sendJson({ type: "cancel", run_id: run.id }); });
  if (clearBtn) {
    clearBtn.addEventListener("click", async () => {
      if (!conversationId) return;
      const resp = await fetch(`/api/v1/conversations/${encodeURIComponent(conversationId)}/clear/`, {
        method: "POST", headers: { "X-CSRFToken": csrf() }, credentials: "same-origin",
      });
      if (resp.ok) log.textContent = "";
    });
  }
  busy(false);
  connect();
})();
