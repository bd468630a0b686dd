// browser.mjs: headless Chromium tests of web/piggyback.js on a host page that
// is not the demo (tests/e2e/host.html: its own fetch and XHR calls, one script
// tag) and on the demo (web/index.html), against a running lighttpd (started by
// tests/e2e/run_e2e.py with a short acknowledgement lease and poll interval).
//
// usage: node browser.mjs CONFIG_JSON
//   {"url": "http://127.0.0.1:PORT/", "password": "<dave's>", "cookies": {"erin": "<pb_session>", ...},
//    "redirect": "/cgi-bin/NAME" (a program of the site that answers 302 to the URL in its query),
//    "show": ["/path/piggyback", "--db", DB, "user", "show"],
//    "send": ["/path/piggyback", "--db", DB, "send"], "chromium": "/usr/bin/chromium",
//    "profile_root": "/tmp/...", "screenshots": "/path/dir", "lease": 5, "poll": 2}
// Prints one line per check, "ok NAME" or "not ok NAME: why"; exits 1 if any
// failed. Every assertion is on what the page shows or on the server's answers,
// never on how long something took.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import http from "node:http";
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

// `piggyback send`: the new message's id.
function send(from, to, subject, body = "sent by the browser test") {
  const out = execFileSync(cfg.send[0], [...cfg.send.slice(1), "--from", from, "--to", to, "--subject", subject,
    "--body", body], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], env: process.env });
  const m = /^stored message (\d+)/.exec(out);
  assert(m, `piggyback send printed ${JSON.stringify(out)}`);
  return Number(m[1]);
}

const contexts = [];
async function browser(name, locale, user, { extraArgs = [], url = cfg.url } = {}) {
  const dir = mkdtempSync(path.join(cfg.profile_root, name + "-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: cfg.chromium || "/usr/bin/chromium",
    headless: true,
    locale,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync", ...extraArgs],
  });
  contexts.push(context);
  if (user) {
    await context.addCookies([{ name: "pb_session", value: cfg.cookies[user], url, sameSite: "Lax" }]);
  }
  return context;
}

// `piggyback user show NAME`: the user's counters as the database has them.
function shown(name) {
  return JSON.parse(execFileSync(cfg.show[0], [...cfg.show.slice(1), name],
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], env: process.env }));
}

// Another origin: a real HTTP server on 127.0.0.1 that records every request it
// gets. Its JSON carries a site_messages of its own (a fake "security notice")
// and allows any origin to read it (CORS), but grants no preflight.
const FAKE_ID = 987654;
function otherOrigin() {
  const seen = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, headers: req.headers });
    if (req.method === "OPTIONS") { res.writeHead(204); res.end(); return; }
    if (req.url.startsWith("/page.html")) {
      const target = new URL(req.url, "http://x").searchParams.get("to");
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
      res.end(`<!doctype html><title>another site</title><a id="go" href="${target}">a link</a>`);
      return;
    }
    res.writeHead(200, { "Content-Type": "application/json", "Access-Control-Allow-Origin": "*" });
    res.end(JSON.stringify({
      other: "origin",
      site_messages: {
        unread: 1, delivered: 0, new: 1, more: false, batch: 77,
        items: [{ id: FAKE_ID, from: "security", subject: "Security notice",
          snippet: "sign in again at http://evil.example", sent_at: "2026-01-01T00:00:00Z" }],
      },
    }));
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, seen, port: server.address().port })));
}

const pageErrors = [];
// Every answer of the site a page got: path, status, headers, site_messages,
// and the request's X-Piggyback-Ack and If-None-Match.
function watch(page) {
  const log = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("response", async (r) => {
    const u = new URL(r.url());
    if (!u.pathname.startsWith("/cgi-bin/")) return;
    const req = r.request().headers();
    const entry = { path: u.pathname, status: r.status(), headers: r.headers(), ack: req["x-piggyback-ack"],
      ifNoneMatch: req["if-none-match"], sm: undefined };
    log.push(entry);
    try {
      const body = await r.json();
      entry.sm = body && body.site_messages;
    } catch (e) { /* 304, or not JSON */ }
  });
  return log;
}
const notes = (page) => page.locator("[data-piggyback-toast]");
const noteFor = (page, id) => page.locator(`[data-piggyback-toast~="${id}"]`);
async function counters(page) {
  return page.evaluate(() => {
    const v = (w) => document.querySelector(`[data-piggyback-count="${w}"]`)?.textContent.trim();
    return { delivered: v("delivered"), new: v("new") };
  });
}
// The site_messages of the last answer that carried one.
function lastSm(log) {
  for (let i = log.length - 1; i >= 0; i--) if (log[i].sm) return log[i].sm;
  return null;
}
async function settle(page) {
  await page.waitForLoadState("networkidle");
  await sleep(150); // the clone's JSON is read after the page's own
}
// Holds back the page's idle checks (aborted before they reach the server), so
// that a note comes from the request the test makes; the idle test lets them go.
const STATUS = "**/cgi-bin/messages/status*";
async function quiet(page) {
  await page.route(STATUS, (route) => route.abort("blockedbyclient"));
}
async function shot(page, locator, name) {
  await locator.first().screenshot({ path: path.join(cfg.screenshots, name) });
}

let failedHard = false;
try {
  // ---- a host page that is not the demo, English ----------------------------------
  const en = await browser("en", "en-US", "erin");
  const host = en.pages()[0] || (await en.newPage());
  const hostLog = watch(host);
  await quiet(host);
  await host.goto(cfg.url + "host.html");

  await check("host page: one note per message from the page's own fetch, counters and words", async () => {
    const id = send("bob", "erin", `host fetch ${run}`);
    await host.click("#by-fetch");
    await noteFor(host, id).waitFor({ timeout: 10000 });
    await host.locator("#out", { hasText: "fetch: erin" }).waitFor({ timeout: 5000 });
    await settle(host);
    eq(await notes(host).count(), 1, "notes");
    const sm = lastSm(hostLog);
    eq(sm.items.map((i) => i.id), [id], "announced");
    eq(await counters(host), { delivered: String(sm.delivered), new: "1" }, "counters");
    const text = await noteFor(host, id).textContent();
    assert(text.includes("Message from bob") && text.includes(`host fetch ${run}`), `note says ${text}`);
    const bar = await host.locator(".piggyback-counter").textContent();
    assert(bar.includes("Shown, still unread") && bar.includes("New this time"), `counter says ${bar}`);
    const req = hostLog.find((e) => e.path === "/cgi-bin/profile");
    eq(req.ack, undefined, "the page's own request's X-Piggyback-Ack");
    const focus = await host.evaluate(() => !!document.activeElement?.closest("[data-piggyback-toast], .piggyback-notes"));
    assert(!focus, "the note took the focus");
    const live = await host.locator(".piggyback-notes").getAttribute("aria-live");
    eq(live, "polite", "aria-live of the notes");
    const bg = await host.evaluate(() => getComputedStyle(document.body).backgroundColor);
    eq(bg, "rgb(238, 238, 255)", "the host page's own body style");
    await shot(host, noteFor(host, id), "host-note-en.png");
  });

  await check("host page: the page's own XHR (text and json) answers are read too", async () => {
    await host.evaluate(() => {
      window.__events = [];
      document.addEventListener("piggyback:messages", (e) => window.__events.push(e.detail));
    });
    const a = send("bob", "erin", `host xhr ${run}`);
    await host.click("#by-xhr");
    await noteFor(host, a).waitFor({ timeout: 10000 });
    await host.locator("#out", { hasText: "xhr: 0 friends" }).waitFor({ timeout: 5000 });
    const b = send("bob", "erin", `host xhr json ${run}`);
    await host.click("#by-xhr-json");
    await noteFor(host, b).waitFor({ timeout: 10000 });
    await host.locator("#out", { hasText: "xhr json:" }).waitFor({ timeout: 5000 });
    await settle(host);
    const acks = hostLog.filter((e) => e.path !== "/cgi-bin/messages/status").map((e) => e.ack);
    assert(acks.every((x) => x === undefined), `the page's own requests carried acknowledgements ${acks}`);
    const sm = lastSm(hostLog);
    eq(await counters(host), { delivered: String(sm.delivered), new: String(sm.new) }, "counters");
    const events = await host.evaluate(() => window.__events);
    eq(events.length, 2, "piggyback:messages events");
    eq(events[1], sm, "the event's detail");
  });

  await check("host page: a note is dismissed by keyboard", async () => {
    const before = await notes(host).count();
    assert(before > 0, "no note to dismiss");
    await notes(host).first().locator("button").last().focus();
    await host.keyboard.press("Escape");
    eq(await notes(host).count(), before - 1, "notes after Escape");
    if (before > 1) {
      await notes(host).first().locator("button").last().focus();
      await host.keyboard.press("Enter");
      eq(await notes(host).count(), before - 2, "notes after Enter on the close button");
    }
  });

  await check("host page: a second tab shows no note but the right counters", async () => {
    const tab = await en.newPage();
    const tabLog = watch(tab);
    await quiet(tab);
    await tab.goto(cfg.url + "host.html");
    const id = send("bob", "erin", `two tabs ${run}`);
    await host.click("#by-fetch");
    await noteFor(host, id).waitFor({ timeout: 10000 });
    await tab.click("#by-fetch");
    await tab.locator("#out", { hasText: "fetch: erin" }).waitFor({ timeout: 5000 });
    await settle(tab);
    eq(await notes(tab).count(), 0, "notes in the second tab");
    const sm = lastSm(tabLog);
    eq(sm.new, 0, "the second tab's answer announces nothing");
    eq(await counters(tab), { delivered: String(sm.delivered), new: "0" }, "second tab's counters");
    await tab.close();
  });

  await check("host page: a coalesced note says how many it does not list", async () => {
    await host.evaluate(() => document.querySelectorAll("[data-piggyback-toast]").forEach((n) => n.remove()));
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(send("bob", "erin", `many ${run} ${i}`));
    await host.click("#by-fetch");
    await notes(host).first().waitFor({ timeout: 10000 });
    await settle(host);
    eq(await notes(host).count(), 1, "notes");
    const listed = (await notes(host).first().getAttribute("data-piggyback-toast")).split(" ").map(Number).sort();
    eq(listed, [...ids].sort(), "ids of the coalesced note");
    const text = await notes(host).first().textContent();
    assert(text.includes("5 new messages from bob"), `note says ${text}`);
    assert(text.includes("and 2 more"), `note does not say what it leaves out: ${text}`);
    eq(await notes(host).first().locator(".piggyback-note-line").count(), 3, "lines listed");
    await shot(host, notes(host), "host-coalesced-en.png");
  });

  await check("host page: the idle check by itself, 304 while nothing changed, then the note", async () => {
    await host.evaluate(() => document.querySelectorAll("[data-piggyback-toast]").forEach((n) => n.remove()));
    await host.unroute(STATUS);
    const from = hostLog.length;
    const statusAnswers = () => hostLog.slice(from).filter((e) => e.path === "/cgi-bin/messages/status");
    // The first check comes after the client's default 30 s (it has not heard the
    // server's X-Poll-Interval yet: the checks so far were held back), then every 2 s.
    await host.waitForResponse((r) => r.url().includes("/cgi-bin/messages/status") && r.status() === 304,
      { timeout: 60000 });
    await sleep(100);
    const checks = statusAnswers();
    assert(checks.length >= 1 && checks.some((e) => e.status === 304), `status answers ${checks.map((e) => e.status)}`);
    for (const e of checks.filter((x) => x.status === 304)) {
      eq(e.headers["x-poll-interval"], String(cfg.poll), "X-Poll-Interval");
      eq(e.ifNoneMatch, e.headers["etag"], "If-None-Match of a 304");
      eq(e.sm, undefined, "a 304's body");
    }
    const id = send("bob", "erin", `idle ${run}`);
    await noteFor(host, id).waitFor({ timeout: 30000 });
    await settle(host);
    const carrier = hostLog.slice(from).find((e) => e.sm && e.sm.items.some((i) => i.id === id));
    eq([carrier.path, carrier.status], ["/cgi-bin/messages/status", 200], "the answer that announced it");
    assert(carrier.ifNoneMatch, "the announcing check sent If-None-Match");
    eq(await counters(host), { delivered: String(carrier.sm.delivered), new: "1" }, "counters");
    const after = hostLog.length;
    await host.waitForResponse((r) => r.url().includes("/cgi-bin/messages/status") && r.status() === 304,
      { timeout: 30000 });
    assert(hostLog.slice(after).every((e) => !e.sm || e.sm.items.length === 0), "announced again");
    eq(await noteFor(host, id).count(), 1, "notes for the idle message");
    await quiet(host);
  });

  await check("host page: the idle check obeys X-Poll-Interval, and a hidden tab waits longer", async () => {
    eq(await host.evaluate(() => Piggyback.checkDelay()), cfg.poll, "delay while visible");
    const hidden = await host.evaluate(() => {
      Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
      document.dispatchEvent(new Event("visibilitychange"));
      return Piggyback.checkDelay();
    });
    eq(hidden, cfg.poll * 4, "delay while hidden");
    const back = await host.evaluate(() => {
      delete document.hidden;
      document.dispatchEvent(new Event("visibilitychange"));
      return Piggyback.checkDelay();
    });
    eq(back, cfg.poll, "delay when visible again");
  });

  await check("host page with the script tag of docs/DEPLOY.md: its data-lang wins over the browser's", async () => {
    const page = await en.newPage();
    watch(page);
    await quiet(page);
    await page.goto(cfg.url + "host-doc.html");
    const id = send("bob", "erin", `doc tag ${run}`);
    await page.click("#by-fetch");
    await noteFor(page, id).waitFor({ timeout: 10000 });
    const text = await noteFor(page, id).textContent();
    assert(text.includes("来自 bob 的消息"), `note says ${text}`);
    const look = await page.locator(".piggyback-notes").getAttribute("class");
    assert(look.includes("piggyback-look-note"), `look ${look}`);
    await page.close();
  });

  // ---- the client stays on its own origin ----------------------------------------------
  // Host names that are not localhost, all mapped to 127.0.0.1: Chromium then treats
  // the site as plain http (no Sec-Fetch-* headers) and the other server as another site.
  {
    const other = await otherOrigin();
    const port = new URL(cfg.url).port;
    const site = `http://site.test:${port}`;
    const away = `http://other.test:${other.port}`;
    const rules = "MAP site.test 127.0.0.1, MAP other.test 127.0.0.1, MAP evil.test 127.0.0.1";
    const ctx = await browser("origins", "en-US", "hana", { extraArgs: [`--host-resolver-rules=${rules}`], url: site });
    const page = ctx.pages()[0] || (await ctx.newPage());
    const pageLog = watch(page);
    await quiet(page);
    await page.goto(site + "/host.html");
    const fake = () => page.locator(`[data-piggyback-toast~="${FAKE_ID}"], [data-piggyback-toast]:has-text("Security notice")`);
    const acksAway = () => other.seen.filter((r) => r.headers["x-piggyback-ack"] !== undefined || r.method === "OPTIONS");

    await check("origins: a same-origin fetch redirected to another origin shows no note from there", async () => {
      const body = await page.evaluate(async (url) => {
        const r = await fetch(url);
        return { url: r.url, json: await r.json() };
      }, `${cfg.redirect}?${away}/evil`);
      eq([body.url, body.json.other], [`${away}/evil`, "origin"], "the page's fetch got the other origin's answer");
      // A note of the site's own, so the client has certainly read what it would read.
      const id = send("bob", "hana", `origins ${run}`);
      await page.click("#by-fetch");
      await noteFor(page, id).waitFor({ timeout: 10000 });
      await settle(page);
      eq(await fake().count(), 0, "notes from the other origin");
      eq(acksAway().map((r) => r.method), [], "requests to the other origin with X-Piggyback-Ack, or preflights");
    });

    await check("origins: a reused XHR sent to another origin shows no note from there", async () => {
      const got = await page.evaluate((url) => new Promise((resolve, reject) => {
        const x = new XMLHttpRequest();
        x.open("GET", "/cgi-bin/profile");
        x.onload = () => {
          x.onload = () => resolve({ url: x.responseURL, other: JSON.parse(x.responseText).other });
          x.onerror = () => reject(new Error("the second send failed"));
          x.open("GET", url);
          x.send();
        };
        x.onerror = () => reject(new Error("the first send failed"));
        x.send();
      }), `${away}/xhr`);
      eq(got, { url: `${away}/xhr`, other: "origin" }, "the reused XHR's second answer");
      await settle(page);
      eq(await fake().count(), 0, "notes from the other origin");
      eq(acksAway().map((r) => r.method), [], "requests to the other origin with X-Piggyback-Ack, or preflights");
    });

    await check("origins: a cross-origin simple fetch keeps working and never carries an acknowledgement", async () => {
      const before = other.seen.length;
      const got = await page.evaluate(async (url) => (await (await fetch(url)).json()).other, `${away}/simple`);
      eq(got, "origin", "the cross-origin answer");
      const reqs = other.seen.slice(before);
      eq(reqs.map((r) => [r.method, r.url]), [["GET", "/simple"]], "what the other origin received");
      eq(reqs[0].headers["x-piggyback-ack"], undefined, "X-Piggyback-Ack at the other origin");
      await settle(page);
      eq(await fake().count(), 0, "notes from the other origin");
    });

    await check("origins: a plain-http link from another site to messages/status flips nothing", async () => {
      const id = send("bob", "hana", `not for a link ${run}`);
      const before = shown("hana");
      assert(before.new >= 1, `hana has nothing new: ${JSON.stringify(before)}`);
      const evil = await ctx.newPage();
      const evilLog = watch(evil);
      await evil.goto(`http://evil.test:${other.port}/page.html?to=${encodeURIComponent(site + "/cgi-bin/messages/status")}`);
      await Promise.all([evil.waitForURL(/messages\/status/), evil.click("#go")]);
      await settle(evil);
      const nav = evilLog.find((e) => e.path === "/cgi-bin/messages/status");
      assert(nav, "the navigation's answer was not seen");
      eq(nav.status, 200, "the navigation's status");
      assert(nav.sm && nav.sm.unread >= 1, `the navigation was not identified: ${JSON.stringify(nav.sm)}`);
      eq(nav.sm.items, [], "items announced to a navigation");
      const after = shown("hana");
      eq([after.new, after.delivered], [before.new, before.delivered], "hana's counters after the navigation");
      await evil.close();
      // The page itself still announces it, once.
      await page.click("#by-fetch");
      await noteFor(page, id).waitFor({ timeout: 10000 });
      await settle(page);
      eq(await noteFor(page, id).count(), 1, "notes for the message the link left alone");
      eq(pageLog.filter((e) => e.ack !== undefined && e.path !== "/cgi-bin/messages/status").length, 0,
        "the page's own requests carried X-Piggyback-Ack");
    });
    await ctx.close();
    other.server.close();
  }

  // ---- the demo, English -------------------------------------------------------------
  await host.close();
  await en.clearCookies();
  const demo = await en.newPage();
  const demoLog = watch(demo);
  await quiet(demo);
  await check("demo: the sign-in page shows no operator command", async () => {
    await demo.goto(cfg.url + "#/login");
    await demo.locator("form.sign-in").waitFor({ timeout: 10000 });
    const text = await demo.locator("body").textContent();
    assert(!/piggyback token|--ttl/.test(text), "an operator command on the sign-in page");
    assert(text.includes("Sign in"), `sign-in page says ${text}`);
  });

  await check("demo: sign in; the two numbers with their words", async () => {
    await demo.locator("form.sign-in input[name=name]").fill("dave");
    await demo.locator("form.sign-in input[name=password]").fill(cfg.password);
    await demo.locator("form.sign-in button[type=submit]").click();
    await demo.locator("#nav").waitFor({ state: "visible", timeout: 10000 });
    assert((await demo.locator("#who").textContent()).includes("dave"), "who");
    await settle(demo);
    const words = await demo.locator("#counters").textContent();
    assert(words.includes("Shown, still unread") && words.includes("New this time"), `counters say ${words}`);
  });

  await check("demo: one note per message; the green badge is the server's new", async () => {
    const before = lastSm(demoLog);
    const id = send("bob", "dave", `demo ${run}`);
    await demo.locator("nav a[href='#/friends']").click();
    await noteFor(demo, id).waitFor({ timeout: 10000 });
    await settle(demo);
    eq(await noteFor(demo, id).count(), 1, "notes");
    let sm = lastSm(demoLog);
    eq(await counters(demo), { delivered: String(sm.delivered), new: String(sm.new) }, "badges after the note");
    eq(sm.new, 1, "the answer's new");
    await demo.locator("nav a[href='#/posts']").click();
    await demo.locator("main h1", { hasText: "Posts" }).waitFor();
    await settle(demo);
    sm = lastSm(demoLog);
    eq(await counters(demo), { delivered: String((before ? before.delivered : 0) + 1), new: "0" }, "badges later");
    eq(await noteFor(demo, id).count(), 1, "notes later");
    await shot(demo, noteFor(demo, id), "demo-note-en.png");
    await demo.screenshot({ path: path.join(cfg.screenshots, "demo-page-en.png") });
  });

  await check("demo: a cut-off answer is an inline, retryable error, and its note comes once after the lease", async () => {
    const id = send("bob", "dave", `lost ${run}`);
    let lost = null;
    await demo.route("**/cgi-bin/friends*", async (route) => {
      // The server answers (and counts the message delivered); the page never gets it.
      const answer = await route.fetch();
      lost = await answer.json();
      await route.abort("connectionreset");
    });
    const badgesBefore = await counters(demo);
    await demo.locator("nav a[href='#/friends']").click();
    const retry = demo.locator("#notice [data-retry]");
    await retry.waitFor({ timeout: 10000 });
    await demo.unroute("**/cgi-bin/friends*");
    assert(lost && lost.site_messages.items.some((i) => i.id === id), "the lost answer did not announce it");
    eq(await demo.locator("main h1").textContent(), "Posts", "the view under the error");
    const err = await demo.locator("#notice").textContent();
    assert(err.includes("did not arrive"), `the error says ${err}`);
    assert(!err.includes("Failed to fetch"), `raw error text: ${err}`);
    eq(await noteFor(demo, id).count(), 0, "a note from an answer the page never got");
    eq(await counters(demo), badgesBefore, "badges after the lost answer");
    await sleep((cfg.lease + 1) * 1000); // let the lease run out (a wait, not an assertion)
    await retry.click();
    await demo.locator("main h1", { hasText: "Friends" }).waitFor({ timeout: 10000 });
    await noteFor(demo, id).waitFor({ timeout: 10000 });
    await demo.locator("nav a[href='#/posts']").click();
    await settle(demo);
    eq(await noteFor(demo, id).count(), 1, "notes for the lost message");
    const again = demoLog.find((e) => e.sm && e.sm.items.some((i) => i.id === id));
    assert(again && again.sm.items.find((i) => i.id === id).repeat === true, "the note came from a repeat");
    eq(await demo.locator("#notice").textContent(), "", "the error after the retry");
  });

  await check("demo: the language switch", async () => {
    await demo.selectOption("#lang", "zh");
    await demo.locator("nav a[href='#/mailbox']", { hasText: "站内信" }).waitFor({ timeout: 5000 });
    const words = await demo.locator("#counters").textContent();
    assert(words.includes("已提送未读") && words.includes("本次新消息"), `counters say ${words}`);
    await demo.selectOption("#lang", "en");
    await demo.locator("nav a[href='#/mailbox']", { hasText: "Mailbox" }).waitFor({ timeout: 5000 });
  });

  // ---- Chinese -----------------------------------------------------------------------
  const zh = await browser("zh", "zh-CN", "frank");
  const zdemo = zh.pages()[0] || (await zh.newPage());
  const zLog = watch(zdemo);
  await quiet(zdemo);
  await check("zh-CN: the demo and its notes in Chinese, server notices too", async () => {
    await zdemo.goto(cfg.url);
    await zdemo.locator("#nav").waitFor({ state: "visible", timeout: 10000 });
    await settle(zdemo);
    const nav = await zdemo.locator("header").textContent();
    for (const w of ["动态", "好友", "站内信", "已提送未读", "本次新消息", "已登录：frank"]) {
      assert(nav.includes(w), `header lacks ${w}: ${nav}`);
    }
    const id = send("bob", "frank", `中文 ${run}`, "明天中午一起吃饭吗？");
    await zdemo.locator("nav a[href='#/friends']").click();
    await noteFor(zdemo, id).waitFor({ timeout: 10000 });
    const text = await noteFor(zdemo, id).textContent();
    assert(text.includes("来自 bob 的消息") && text.includes("明天中午"), `note says ${text}`);
    await shot(zdemo, noteFor(zdemo, id), "demo-note-zh.png");
    await zdemo.screenshot({ path: path.join(cfg.screenshots, "demo-page-zh.png") });
    // A notice the server writes: gina asks frank to be friends.
    const r = await fetch(origin + "/cgi-bin/friends", {
      method: "POST",
      headers: { "Content-Type": "application/json", Cookie: `pb_session=${cfg.cookies.gina}`, Origin: origin },
      body: JSON.stringify({ action: "request", user: "frank" }),
    });
    eq(r.status, 200, "gina's friend request");
    await zdemo.locator("nav a[href='#/posts']").click();
    const req = zdemo.locator("[data-piggyback-toast]", { hasText: "gina 请求加你为好友" });
    await req.waitFor({ timeout: 10000 });
    await zdemo.locator("nav a[href='#/mailbox']").click();
    await zdemo.locator(".mail", { hasText: "gina 想加你为好友" }).first().click();
    await zdemo.locator("main .body", { hasText: "gina 请求加你为好友。请在好友页面接受或拒绝。" }).waitFor({ timeout: 10000 });
    await settle(zdemo);
    const sm = lastSm(zLog);
    eq(await counters(zdemo), { delivered: String(sm.delivered), new: String(sm.new) }, "badges");
  });

  await check("zh-CN: a host page's notes and counter in Chinese", async () => {
    const page = await zh.newPage();
    watch(page);
    await page.goto(cfg.url + "host.html");
    const id = send("bob", "frank", `host zh ${run}`);
    await page.click("#by-fetch");
    await noteFor(page, id).waitFor({ timeout: 10000 });
    assert((await noteFor(page, id).textContent()).includes("来自 bob 的消息"), "note words");
    const bar = await page.locator(".piggyback-counter").textContent();
    assert(bar.includes("已提送未读") && bar.includes("本次新消息"), `counter says ${bar}`);
    await page.close();
  });

  await check("no script errors", async () => {
    assert(pageErrors.length === 0, pageErrors.join("; "));
  });
} catch (e) {
  failedHard = true;
  console.log(`not ok browser: ${String(e).split("\n")[0]}`);
} finally {
  for (const c of contexts) await c.close().catch(() => {});
}
process.exit(failedHard || results.includes(false) ? 1 : 0);
