// Drives Debian's Chromium with playwright-core for the browser interop tests.
//
// One process = one Chromium (fresh user data dir, deleted on exit) with any number of pages
// (tabs), each labelled by the caller. Every page loads tests/browser/page/index.html from the
// test's HTTP server, which runs the published JavaScript SDK's UMD build and harness.js
// (`window.H`).
//
// Protocol: JSON lines.
//   argv[2] <- JSON {executablePath, args: [...], userDataDir?}
//   stdin   <- {"id": 1, "cmd": "...", ...args}
//   stdout  -> {"type": "ready", "userAgent": "..."}
//              {"type": "result", "id": 1, "ok": true, "value": ...}
//              {"type": "result", "id": 1, "ok": false, "error": {"name", "message"}}
//              {"type": "event", "page": "<label>", "name": "<harness event>", "payload": {...}}
//              {"type": "console", "page": "<label>", "level": "...", "text": "..."}
//              {"type": "page-crash" | "page-error", "page": "<label>", ...}
//   every line also carries "seq" (counter over all output lines) and "t" (Date.now()).
//
// Commands:
//   open {page, url}            open a new tab and wait for the harness to be ready
//   open_url {page, url}        open a new tab on any page (no harness: the server's console)
//   screenshot {page, path}     save a PNG of the whole page
//   call {page, method, args}   await window.H[method](...args) in that tab; value = result
//   eval {page, expr}           await an arbitrary expression in that tab
//   reload {page}               reload the tab and wait for the harness
//   close_page {page}           close the tab
//   exit                        close the browser and exit (also on stdin end)

import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

// playwright-core is installed with the interop harness's dependencies (tests/interop).
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "interop", "package.json"));
const { chromium } = require("playwright-core");

let seq = 0;
function emit(obj) {
  seq += 1;
  process.stdout.write(`${JSON.stringify({ ...obj, seq, t: Date.now() })}\n`);
}

function describeError(err) {
  if (err === null || typeof err !== "object") return { name: "NonError", message: String(err) };
  return { name: err.name, message: String(err.message).slice(0, 4000) };
}

const config = JSON.parse(process.argv[2] || "{}");
// The caller may own the directory (and remove it even if this process is killed).
const userDataDir = config.userDataDir || fs.mkdtempSync(path.join(os.tmpdir(), "metered-chromium-"));
const pages = new Map(); // label -> Page
const labels = new Map(); // Page -> label

let context = null;
let closing = null;

async function shutdown(code) {
  if (closing) return closing;
  closing = (async () => {
    try {
      if (context) await Promise.race([context.close(), new Promise((r) => setTimeout(r, 5000))]);
    } catch (err) {
      emit({ type: "driver-error", where: "close", error: describeError(err) });
    }
    fs.rmSync(userDataDir, { recursive: true, force: true });
    process.exit(code);
  })();
  return closing;
}

async function waitHarness(page) {
  await page.waitForFunction(() => window.H && window.H.ready === true, null, { timeout: 10000 });
}

async function openPage(label, url, harness = true) {
  if (pages.has(label)) throw new Error(`page ${label} already open`);
  const page = await context.newPage();
  pages.set(label, page);
  labels.set(page, label);
  page.on("console", (msg) => emit({ type: "console", page: label, level: msg.type(), text: msg.text() }));
  page.on("pageerror", (err) => emit({ type: "page-error", page: label, error: describeError(err) }));
  page.on("crash", () => emit({ type: "page-crash", page: label }));
  await page.goto(url, { waitUntil: "load", timeout: 10000 });
  if (harness) await waitHarness(page);
  return true;
}

function pageOf(label) {
  const page = pages.get(label);
  if (!page) throw new Error(`no page ${label}`);
  return page;
}

async function run(msg) {
  switch (msg.cmd) {
    case "open":
      return openPage(msg.page, msg.url);
    case "open_url":
      return openPage(msg.page, msg.url, false);
    case "screenshot":
      await pageOf(msg.page).screenshot({ path: msg.path, fullPage: true });
      return true;
    case "call":
      return pageOf(msg.page).evaluate(
        ([method, args]) => {
          const fn = window.H[method];
          if (typeof fn !== "function") throw new Error(`H.${method} is not a function`);
          return fn(...args);
        },
        [msg.method, msg.args || []],
      );
    case "eval":
      return pageOf(msg.page).evaluate(msg.expr);
    case "reload": {
      const page = pageOf(msg.page);
      await page.reload({ waitUntil: "load", timeout: 10000 });
      await waitHarness(page);
      return true;
    }
    case "close_page": {
      const page = pageOf(msg.page);
      pages.delete(msg.page);
      await page.close();
      return true;
    }
    case "exit":
      setImmediate(() => shutdown(0));
      return true;
    default:
      throw new Error(`unknown command ${msg.cmd}`);
  }
}

try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: config.executablePath || "/usr/bin/chromium",
    headless: true,
    args: config.args || [],
    timeout: 30000,
  });
  await context.exposeBinding("__report", (source, json) => {
    const label = labels.get(source.page) ?? "?";
    let parsed;
    try {
      parsed = JSON.parse(json);
    } catch (err) {
      parsed = { name: "bad-report", payload: { raw: String(json).slice(0, 1000) } };
    }
    emit({ type: "event", page: label, name: parsed.name, payload: parsed.payload });
  });
  // The persistent context opens one blank tab; leave it unused.
  const blank = context.pages()[0];
  const userAgent = blank ? await blank.evaluate(() => navigator.userAgent) : null;
  emit({ type: "ready", userAgent });
} catch (err) {
  emit({ type: "driver-error", where: "launch", error: describeError(err) });
  await shutdown(1);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (err) {
    emit({ type: "driver-error", where: "parse", error: describeError(err) });
    return;
  }
  run(msg).then(
    (value) => emit({ type: "result", id: msg.id, ok: true, value: value === undefined ? null : value }),
    (err) => emit({ type: "result", id: msg.id, ok: false, error: describeError(err) }),
  );
});
rl.on("close", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));
