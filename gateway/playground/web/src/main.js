// The playground page's script: a CodeMirror 6 editor and a client of the
// gateway's POST /execute with the NDJSON stream (API.md, "Streaming").
// build.mjs bundles this file with its npm dependencies into
// ../assets/playground.js, which the gateway embeds and inlines into the
// page; nothing is fetched from anywhere but the gateway itself.

import { EditorView, basicSetup } from "codemirror";
import { keymap } from "@codemirror/view";
import { Prec } from "@codemirror/state";
import { indentWithTab } from "@codemirror/commands";
import { indentUnit } from "@codemirror/language";
import { python } from "@codemirror/lang-python";
import { examples } from "./examples.js";

const $ = (id) => document.getElementById(id);
const keyStorage = "pyexec.apiKey";

// The limit fields the gateway rendered from its limit table.
const limitFields = JSON.parse($("limit-fields").textContent);

// --- editor -----------------------------------------------------------------

// Highest precedence: the default keymap binds Mod-Enter to "insert blank
// line", which would otherwise win.
const runKeys = Prec.highest(keymap.of([{ key: "Mod-Enter", run: () => { run(); return true; }, preventDefault: true }]));

const editor = new EditorView({
  doc: examples[0].script,
  // Python's four-space indentation (PEP 8), not the editor's default two.
  extensions: [basicSetup, runKeys, keymap.of([indentWithTab]), indentUnit.of("    "), python(), EditorView.lineWrapping],
  parent: $("editor"),
});

function setScript(text) {
  editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: text } });
}

function script() {
  return editor.state.doc.toString();
}

// --- examples, limits, key ---------------------------------------------------

for (const ex of examples) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = ex.title;
  b.dataset.example = ex.name;
  b.title = ex.note || "";
  b.addEventListener("click", () => {
    setScript(ex.script);
    $("args").value = ex.args ? JSON.stringify(ex.args, null, 2) : "";
    setInputFiles(ex.files || []);
    editor.focus();
  });
  $("examples").appendChild(b);
}

for (const f of limitFields) {
  const label = document.createElement("label");
  label.title = f.doc;
  const span = document.createElement("span");
  span.textContent = f.field + (f.unit ? " (" + f.unit + ")" : "");
  const input = document.createElement("input");
  input.type = "number";
  input.min = "0";
  input.step = f.integer ? "1" : "any";
  input.name = f.field;
  input.id = "limit-" + f.field;
  input.placeholder = f.placeholder;
  label.append(span, input);
  $("limits").appendChild(label);
}

$("api-key").value = localStorage.getItem(keyStorage) || "";
$("api-key").addEventListener("input", () => {
  const v = $("api-key").value.trim();
  if (v) localStorage.setItem(keyStorage, v);
  else localStorage.removeItem(keyStorage);
});

// Input files: chosen with the file picker (read as base64) or set by an
// example (text).
let inputFiles = [];

function setInputFiles(files) {
  inputFiles = files.slice();
  $("file-picker").value = "";
  $("input-files").textContent = inputFiles.map((f) => f.name).join(", ") || "none";
}

$("file-picker").addEventListener("change", async () => {
  const picked = [];
  for (const file of $("file-picker").files) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    picked.push({ name: file.name, content: toBase64(bytes), encoding: "base64" });
  }
  setInputFiles(picked);
});

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function fromBase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// --- health -------------------------------------------------------------------

async function health() {
  const el = $("health");
  try {
    const resp = await fetch("health", { cache: "no-store" });
    const h = await resp.json();
    el.textContent = h.status === "healthy"
      ? "healthy · " + h.engine + " engine · " + h.tier + " tier"
      : "unhealthy: " + (h.reason || h.supervisor || "unknown");
    el.className = h.status === "healthy" ? "ok" : "bad";
  } catch (e) {
    el.textContent = "unreachable";
    el.className = "bad";
  }
}

// --- running --------------------------------------------------------------------

let running = null; // the AbortController of the execution in flight
let finished = 0; // answers shown so far

// request builds the /execute body from the page, or throws an Error with a
// message for the user.
function request() {
  const body = { script: script() };
  const argsText = $("args").value.trim();
  if (argsText) {
    let args;
    try {
      args = JSON.parse(argsText);
    } catch (e) {
      throw new Error("args is not JSON: " + e.message);
    }
    if (args === null || typeof args !== "object" || Array.isArray(args)) {
      throw new Error("args must be a JSON object");
    }
    body.args = args;
  }
  if (inputFiles.length) body.files = inputFiles;
  for (const f of limitFields) {
    const v = $("limit-" + f.field).value.trim();
    if (v !== "") body[f.field] = Number(v);
  }
  return body;
}

function clearOutput() {
  $("output").textContent = "";
  $("result").textContent = "";
  $("result-box").hidden = true;
  $("error-box").hidden = true;
  $("error-type").textContent = "";
  $("error-message").textContent = "";
  $("traceback").textContent = "";
  $("images").textContent = "";
  $("files").textContent = "";
  $("files-box").hidden = true;
  $("images-box").hidden = true;
  $("stats").textContent = "";
  $("truncated").textContent = "";
}

function appendOutput(stream, text) {
  const out = $("output");
  const last = out.lastElementChild;
  if (last && last.dataset.stream === stream) {
    last.textContent += text;
  } else {
    const span = document.createElement("span");
    span.className = stream;
    span.dataset.stream = stream;
    span.textContent = text;
    out.appendChild(span);
  }
  out.scrollTop = out.scrollHeight;
}

function setState(state, text) {
  const el = $("state");
  el.dataset.state = state;
  el.textContent = text;
  document.body.dataset.state = state;
}

async function run() {
  if (running) return;
  let body;
  try {
    body = request();
  } catch (e) {
    clearOutput();
    showError({ type: "invalid_request", message: e.message }, 0);
    setState("error", "not sent");
    finished++;
    return;
  }
  clearOutput();
  const ctl = new AbortController();
  running = ctl;
  $("run").disabled = true;
  $("cancel").disabled = false;
  setState("running", "running…");
  const started = performance.now();
  const headers = { "Content-Type": "application/json", Accept: "application/x-ndjson" };
  const key = $("api-key").value.trim();
  if (key) headers.Authorization = "Bearer " + key;
  let sawOutput = false;
  try {
    const resp = await fetch("execute", { method: "POST", headers, body: JSON.stringify(body), signal: ctl.signal });
    const type = (resp.headers.get("Content-Type") || "").split(";")[0].trim();
    if (type === "application/x-ndjson") {
      let done = null;
      await readLines(resp.body, (line) => {
        let ev;
        try {
          ev = JSON.parse(line);
        } catch (e) {
          return;
        }
        if (ev.event === "stdout" || ev.event === "stderr") {
          sawOutput = true;
          appendOutput(ev.event, ev.data);
        } else if (ev.event === "done") {
          done = ev;
        }
      });
      if (!done) {
        finish({ error: { type: "internal", message: "the stream ended without its last line (the gateway stopped, or the connection broke)" } }, 0, sawOutput);
      } else {
        finish(done.response, done.status, sawOutput);
      }
    } else {
      const text = await resp.text();
      let answer;
      try {
        answer = JSON.parse(text);
      } catch (e) {
        answer = { error: { type: "internal", message: "HTTP " + resp.status + ": " + text.slice(0, 500) } };
      }
      finish(answer, resp.status, false);
    }
  } catch (e) {
    if (ctl.signal.aborted) {
      finish({ error: { type: "cancelled", message: "cancelled from the page (closing the connection cancels the execution)" } }, 0, sawOutput);
    } else {
      finish({ error: { type: "unavailable", message: "request failed: " + e.message } }, 0, sawOutput);
    }
  } finally {
    running = null;
    $("run").disabled = false;
    $("cancel").disabled = true;
    $("elapsed").textContent = Math.round(performance.now() - started) + " ms in the browser";
  }
}

// readLines calls onLine with each complete line of a byte stream as it
// arrives.
async function readLines(stream, onLine) {
  const reader = stream.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line) onLine(line);
    }
  }
  buf += dec.decode();
  if (buf) onLine(buf);
}

// finish shows a final answer: the /execute body (or the stream's last
// line's response) and its HTTP status (0 = none, the page's own error).
function finish(answer, status, streamed) {
  finished++;
  // A stream's chunks are already on the page; an answer that came whole
  // (refused before it ran, or not streamed) brings its output now.
  if (!streamed) {
    if (answer.stdout) appendOutput("stdout", answer.stdout);
    if (answer.stderr) appendOutput("stderr", answer.stderr);
  }
  if (answer.error) {
    showError(answer.error, status);
    setState("error", answer.error.type + (status ? " (" + status + ")" : ""));
  } else {
    $("result").textContent = JSON.stringify(answer.result, null, 2);
    $("result-box").hidden = false;
    setState("ok", "ok (" + status + ")");
  }
  const s = answer.stats;
  if (s) {
    const parts = ["wall " + s.wall_ms + " ms", "cpu " + s.cpu_ms + " ms", "peak memory " + (s.peak_memory_bytes / 1048576).toFixed(1) + " MiB"];
    if (s.queue_ms) parts.push("queued " + s.queue_ms + " ms");
    $("stats").textContent = parts.join(" · ");
  }
  const t = answer.truncated || {};
  const cut = Object.keys(t).filter((k) => t[k]);
  if (cut.length) $("truncated").textContent = "truncated: " + cut.join(", ");
  for (const [i, im] of (answer.images || []).entries()) {
    const img = document.createElement("img");
    img.alt = "figure " + (i + 1);
    img.src = "data:" + im.media_type + ";base64," + im.data;
    $("images").appendChild(img);
    $("images-box").hidden = false;
  }
  for (const f of answer.files || []) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([fromBase64(f.content)], { type: f.media_type }));
    a.download = f.name.split("/").pop();
    a.textContent = f.name;
    a.dataset.name = f.name;
    li.append(a, " (" + f.size + " bytes, " + f.media_type + ")");
    $("files").appendChild(li);
    $("files-box").hidden = false;
  }
}

function showError(err, status) {
  $("error-type").textContent = err.type;
  $("error-status").textContent = status ? "HTTP " + status : "";
  $("error-message").textContent = err.message || "";
  $("traceback").textContent = err.traceback || "";
  $("traceback").hidden = !err.traceback;
  $("error-box").hidden = false;
}

$("run").addEventListener("click", run);
$("cancel").addEventListener("click", () => running && running.abort());
// Ctrl-Enter (Cmd-Enter) runs from anywhere on the page, not only the editor.
document.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !e.defaultPrevented) {
    e.preventDefault();
    run();
  }
});

setInputFiles([]);
setState("idle", "ready");
health();

// A small handle for tests and the console: read or replace the editor's
// text without going through the DOM CodeMirror manages, and count the
// answers shown (a test waits for the next one).
window.playground = { script, setScript, run, finished: () => finished };
