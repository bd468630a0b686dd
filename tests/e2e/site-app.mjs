// site-app.mjs: headless Chromium on the small PHP application of tests/e2e/site-app,
// integrated as docs/INTEGRATE.md says (the identity line, the script tag), under
// one server started by tests/e2e/run_e2e.py ("site app" suite).
//
// usage: node site-app.mjs CONFIG_JSON
//   {"url": "http://127.0.0.1:PORT/", "passwords": {"ann": "...", "cat": "..."},
//    "send": ["/path/piggyback", "--db", DB, "send"], "chromium": "/usr/bin/chromium",
//    "profile_root": "/tmp/..."}
// Prints one line per check, "ok NAME" or "not ok NAME: why"; exits 1 if any failed.
// Every answer body the browser gets is recorded with the phase it came in, so that
// "nobody but ann ever received ann's messages" is checked on all of them.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import path from "node:path";

const cfg = JSON.parse(process.argv[2]);
const results = [];
function record(name, ok, why) {
  results.push(ok);
  console.log(ok ? `ok ${name}` : `not ok ${name}: ${why}`);
}
async function check(name, f) {
  try {
    await f();
    record(name, true);
  } catch (e) {
    record(name, false, String(e && e.message ? e.message : e).split("\n")[0]);
  }
}
function assert(cond, why) {
  if (!cond) throw new Error(why);
}
function eq(actual, expected, what) {
  assert(JSON.stringify(actual) === JSON.stringify(expected),
    `${what}: ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const run = Date.now().toString(36);
const origin = new URL(cfg.url).origin;

function send(from, to, subject) {
  const out = execFileSync(cfg.send[0], [...cfg.send.slice(1), "--from", from, "--to", to, "--subject", subject,
    "--body", `${subject}, the body`], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], env: process.env });
  const m = /^stored message (\d+)/.exec(out);
  assert(m, `piggyback send printed ${JSON.stringify(out)}`);
  return Number(m[1]);
}

let phase = "start";
const bodies = []; // {phase, url, status, text, json}
const pending = [];
function watch(page) {
  page.on("response", (r) => {
    if (!r.url().startsWith(origin)) return;
    const entry = { phase, url: r.url(), status: r.status(), text: "", json: null };
    bodies.push(entry);
    pending.push(r.text().then((t) => {
      entry.text = t;
      try { entry.json = JSON.parse(t); } catch (e) { /* not JSON */ }
    }, () => { /* a redirect has no body */ }));
  });
}
async function settle(page) {
  await page.waitForLoadState("networkidle");
  await sleep(300);
  await Promise.all(pending.splice(0));
}
const notes = (page) => page.locator("[data-piggyback-toast]");
const noteFor = (page, id) => page.locator(`[data-piggyback-toast~="${id}"]`);
function lastSm() {
  for (let i = bodies.length - 1; i >= 0; i--) {
    if (bodies[i].json && bodies[i].json.site_messages) return bodies[i].json.site_messages;
  }
  return null;
}
async function counters(page) {
  return page.evaluate(() => {
    const v = (w) => document.querySelector(`[data-piggyback-count="${w}"]`)?.textContent.trim();
    return { delivered: v("delivered"), new: v("new") };
  });
}
async function login(page, name) {
  await page.goto(cfg.url + "login.php");
  await page.fill("#login input[name=name]", name);
  await page.fill("#login input[name=password]", cfg.passwords[name]);
  await Promise.all([page.waitForURL(/index\.php/), page.click("#login button[type=submit]")]);
  await page.locator("#status", { hasText: `notes of ${name}` }).waitFor({ timeout: 10000 });
  await settle(page);
}
async function logout(page) {
  await Promise.all([page.waitForURL(/login\.php/), page.click("#logout")]);
  await settle(page);
}
// What the page's script could ask of Piggyback's own programs now: the idle check
// (as piggyback.js asks it) and the profile.
async function askPiggyback(page) {
  await page.evaluate(async () => {
    const headers = { "Accept": "application/json", "X-Piggyback-Ack": "shown=" };
    await fetch("/cgi-bin/messages/status", { headers, cache: "no-store" }).catch(() => {});
    await fetch("/cgi-bin/profile", { headers, cache: "no-store" }).catch(() => {});
  });
  await settle(page);
}

let failedHard = false;
let context = null;
try {
  const dir = mkdtempSync(path.join(cfg.profile_root, "site-app-"));
  context = await chromium.launchPersistentContext(dir, {
    executablePath: cfg.chromium || "/usr/bin/chromium",
    headless: true,
    locale: "en-US",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || (await context.newPage());
  watch(page);
  const forAnn = `for ann ${run}`;
  let later = null;

  await check("the server block serves /piggyback.js and Piggyback's own /cgi-bin/ beside the application", async () => {
    phase = "start";
    await page.goto(cfg.url + "login.php");
    await page.locator("#login").waitFor({ timeout: 10000 });
    eq(await page.evaluate(() => typeof window.Piggyback), "object", "piggyback.js on the application's page");
    const status = await page.evaluate(async () => {
      const r = await fetch("/cgi-bin/messages/status", { headers: { "Accept": "application/json" } });
      return { status: r.status, type: r.headers.get("Content-Type"), body: await r.json() };
    });
    eq([status.status, status.body.error && status.body.error.code], [401, "unauthorized"],
      "messages/status to nobody: " + JSON.stringify(status));
    assert(/application\/json/.test(status.type), `messages/status answered ${status.type}`);
  });

  await check("ann signs in with the application's own form; one note per message, the right counters", async () => {
    phase = "ann";
    await login(page, "ann");
    const id = send("bob", "ann", `${forAnn} one`);
    await page.click("#reload");
    await noteFor(page, id).waitFor({ timeout: 10000 });
    await settle(page);
    eq(await notes(page).count(), 1, "notes");
    const sm = lastSm();
    eq(sm.items.map((i) => i.id), [id], "announced");
    eq(await counters(page), { delivered: String(sm.delivered), new: "1" }, "counters");
    await page.click("#reload");
    await settle(page);
    eq(await noteFor(page, id).count(), 1, "notes after another answer");
    eq(await counters(page), { delivered: String(sm.delivered + 1), new: "0" }, "counters after another answer");
  });

  await check("the application's own JSON members are unchanged", async () => {
    const before = bodies.length;
    await page.fill("#add input[name=text]", `a note ${run}`);
    await page.click("#add button[type=submit]");
    await page.locator("#notes li", { hasText: `a note ${run}` }).waitFor({ timeout: 10000 });
    await settle(page);
    const answers = bodies.slice(before).filter((b) => b.url.includes("/notes.php") && b.json);
    const post = answers.find((b) => b.status === 201);
    const get = answers.find((b) => b.status === 200);
    assert(post && get, `answers ${answers.map((b) => b.status)}`);
    eq(Object.keys(post.json).filter((k) => k !== "site_messages"), ["id", "text"], "the POST's members");
    eq(post.json.text, `a note ${run}`, "the POST's text");
    eq(Object.keys(get.json).filter((k) => k !== "site_messages"), ["user", "notes"], "the GET's members");
    eq(get.json.user, "ann", "the GET's user");
    assert(get.json.notes.some((n) => n.text === `a note ${run}`), `notes ${JSON.stringify(get.json.notes)}`);
    assert(post.json.site_messages && get.json.site_messages, "site_messages on the application's answers");
  });

  await check("after the application's own logout the next anonymous page never gets ann's messages", async () => {
    later = send("bob", "ann", `${forAnn} while away`);
    phase = "anonymous";
    await logout(page);
    await page.goto(cfg.url + "index.php");
    await page.locator("#login").waitFor({ timeout: 10000 });
    await page.evaluate(() => fetch("notes.php").then((r) => r.text()));
    await askPiggyback(page);
    const seen = bodies.filter((b) => b.phase === "anonymous");
    assert(seen.length >= 4, `only ${seen.length} answers recorded`);
    const leaked = seen.filter((b) => b.text.includes(forAnn) || (b.json && b.json.site_messages));
    eq(leaked.map((b) => b.url), [], "anonymous answers with site_messages or ann's messages");
  });

  await check("the next user on the same browser never gets ann's messages", async () => {
    phase = "cat";
    await login(page, "cat");
    await page.click("#reload");
    await askPiggyback(page);
    eq(await noteFor(page, later).count(), 0, "ann's note on cat's page");
    const seen = bodies.filter((b) => b.phase === "cat");
    const leaked = seen.filter((b) => b.text.includes(forAnn));
    eq(leaked.map((b) => b.url), [], "cat's answers with ann's messages");
    const mine = seen.filter((b) => b.json && b.json.site_messages);
    assert(mine.length > 0, "cat's answers carry no site_messages at all");
    for (const b of mine) {
      assert(b.json.site_messages.items.every((i) => !String(i.subject).startsWith(forAnn)), `${b.url}: ${b.text}`);
    }
    await logout(page);
  });

  await check("ann sees what came while she was away once, on her return", async () => {
    phase = "ann again";
    await login(page, "ann");
    const announced = () => bodies.filter((b) => b.json && b.json.site_messages && b.json.site_messages.items.length)
      .map((b) => `${b.phase} ${b.url.replace(origin, "")} ${b.status}: ${b.json.site_messages.items.map((i) => i.id)}`);
    await noteFor(page, later).waitFor({ timeout: 10000 }).catch((e) => {
      throw new Error(`no note for ${later}; the answers that announced something: ${announced().join("; ")}`);
    });
    await page.click("#reload");
    await settle(page);
    eq(await noteFor(page, later).count(), 1, "notes for the message sent while away");
    const carriers = bodies.filter((b) => b.phase === "ann again" && b.json && b.json.site_messages &&
      b.json.site_messages.items.some((i) => i.id === later));
    eq(carriers.length, 1, "answers that announced it");
  });
} catch (e) {
  failedHard = true;
  console.log(`not ok site app: ${String(e).split("\n")[0]}`);
} finally {
  if (context) await context.close().catch(() => {});
}
process.exit(failedHard || results.includes(false) ? 1 : 0);
