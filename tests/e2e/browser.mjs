// browser.mjs: headless Chromium test of web/piggyback.js against a running
// server (run by tests/e2e/run_e2e.py, which starts lighttpd).
//
// usage: node browser.mjs CONFIG_JSON
//   {"url": "http://127.0.0.1:PORT/", "user": "alice", "password": "...",
//    "cookie": "<pb_session value, used when password is null>",
//    "send": ["/path/piggyback", "--db", DB, "send", "--from", "bob", "--to", "alice"],
//    "chromium": "/usr/bin/chromium", "profile_dir": "/tmp/..."}
// Prints one line per check, "ok NAME" or "not ok NAME: why"; exits 1 if
// any failed.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";

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
function send(subject, body) {
  execFileSync(cfg.send[0], [...cfg.send.slice(1), "--subject", subject, "--body", body],
    { stdio: ["ignore", "ignore", "inherit"], env: process.env });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const run = Date.now().toString(36);

const context = await chromium.launchPersistentContext(cfg.profile_dir, {
  executablePath: cfg.chromium || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failedHard = false;
try {
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  const toasts = () => page.locator(".pb-toast");
  // Every /cgi-bin request's X-Piggyback-Ack, and the highest batch answered.
  const acks = [];
  let maxBatch = 0;
  page.on("request", (r) => {
    if (new URL(r.url()).pathname.startsWith("/cgi-bin/")) acks.push(r.headers()["x-piggyback-ack"]);
  });
  page.on("response", async (r) => {
    if (!new URL(r.url()).pathname.startsWith("/cgi-bin/")) return;
    try {
      const b = (await r.json()).site_messages?.batch;
      if (typeof b === "number" && b > maxBatch) maxBatch = b;
    } catch (e) { /* not JSON */ }
  });
  const text = async (sel) => (await page.locator(sel).textContent()).trim();

  await check("browser: sign in", async () => {
    if (cfg.password) {
      await page.goto(cfg.url + "#/login");
      await page.locator("form.sign-in input[name=name]").fill(cfg.user);
      await page.locator("form.sign-in input[name=password]").fill(cfg.password);
      await page.locator("form.sign-in button[type=submit]").click();
    } else {
      const u = new URL(cfg.url);
      await context.addCookies([{ name: "pb_session", value: cfg.cookie, domain: u.hostname, path: "/" }]);
      await page.goto(cfg.url);
    }
    await page.locator("#nav").waitFor({ state: "visible", timeout: 10000 });
    const who = await text("#who");
    assert(who.includes(cfg.user), `header says ${JSON.stringify(who)}`);
    // Let the first views' requests announce whatever was already waiting,
    // then start from a clean slate of notes.
    await page.waitForLoadState("networkidle");
    await page.evaluate(() => document.querySelectorAll(".pb-toast").forEach((t) => t.remove()));
  });

  const subject = `e2e browser ${run}`;
  await check("browser: one toast for one message, counters updated", async () => {
    const unreadBefore = Number(await text("#pb-unread")) || 0;
    const newBefore = Number(await text("#pb-new")) || 0;
    send(subject, "sent by the browser test");
    await page.locator("nav a[href='#/friends']").click();
    await page.locator(".pb-toast", { hasText: subject }).first().waitFor({ timeout: 10000 });
    await page.waitForLoadState("networkidle");
    assert((await toasts().count()) === 1, `expected 1 toast, saw ${await toasts().count()}`);
    const unread = Number(await text("#pb-unread"));
    const newCount = Number(await text("#pb-new"));
    assert(unread === unreadBefore + 1, `unread badge ${unread}, expected ${unreadBefore + 1}`);
    assert(newCount === newBefore + 1, `new counter ${newCount}, expected ${newBefore + 1}`);
  });

  await check("browser: a second request shows no second toast", async () => {
    await page.locator("nav a[href='#/posts']").click();
    await page.waitForLoadState("networkidle");
    await page.evaluate(() => Piggyback.api("GET", "profile"));
    await sleep(500);
    assert((await page.locator(".pb-toast", { hasText: subject }).count()) === 1, "the toast appeared again");
    assert((await toasts().count()) === 1, `expected 1 toast, saw ${await toasts().count()}`);
  });

  await check("browser: every request acknowledges the last batch shown", async () => {
    assert(acks.length > 0 && acks.every((a) => /^\d+$/.test(a || "")), `X-Piggyback-Ack values: ${acks}`);
    assert(maxBatch > 0, "no response carried a batch");
    acks.length = 0;
    await page.evaluate(() => Piggyback.api("GET", "profile"));
    assert(acks[0] === String(maxBatch), `acknowledged ${acks[0]}, last batch shown ${maxBatch}`);
  });

  await check("browser: a second tab does not show the same message again", async () => {
    const seen = await page.evaluate(() => JSON.parse(localStorage.getItem("pb_seen") || "[]"));
    assert(seen.length > 0, "no shown messages remembered");
    const tab = await context.newPage();
    await tab.goto(cfg.url + "#/posts");
    await tab.locator("#nav").waitFor({ state: "visible", timeout: 10000 });
    await tab.waitForLoadState("networkidle");
    // Replay the same announcement in the second tab, as a duplicate would come.
    const [id, sentAt] = seen[seen.length - 1].split("@");
    await tab.evaluate(([id, sentAt]) => Piggyback._handleSiteMessages({ unread: 1, delivered: 0, new: 1,
      items: [{ id: Number(id), from: "bob", subject: "dup", snippet: "dup", sent_at: sentAt }], more: false,
      some_future_member: { x: 1 } }), [id, sentAt]);
    await sleep(300);
    assert((await tab.locator(".pb-toast").count()) === 0, "the second tab showed an already shown message");
    await tab.close();
  });

  await check("browser: many messages at once make one coalesced toast", async () => {
    await page.evaluate(() => document.querySelectorAll(".pb-toast").forEach((t) => t.remove()));
    for (let i = 0; i < 4; i++) send(`e2e many ${run} ${i}`, `batch message ${i}`);
    await page.evaluate(() => Piggyback.api("GET", "profile"));
    const note = page.locator(".pb-toast").first();
    await note.waitFor({ timeout: 10000 });
    const t = await note.textContent();
    assert(/4 new messages from bob/.test(t), `toast says: ${t}`);
    assert((await toasts().count()) === 1, `expected 1 toast, saw ${await toasts().count()}`);
  });

  await check("browser: an idle page still gets its toast", async () => {
    await page.evaluate(() => document.querySelectorAll(".pb-toast").forEach((t) => t.remove()));
    await page.evaluate(() => { Piggyback.idleMs = 1000; });
    const idleSubject = `e2e idle ${run}`;
    send(idleSubject, "nobody clicked anything");
    await page.locator(".pb-toast", { hasText: idleSubject }).first().waitFor({ timeout: 15000 });
  });

  await check("browser: no script errors", async () => {
    assert(pageErrors.length === 0, pageErrors.join("; "));
  });
} catch (e) {
  failedHard = true;
  console.log(`not ok browser: ${String(e).split("\n")[0]}`);
} finally {
  await context.close();
}
process.exit(failedHard || results.includes(false) ? 1 : 0);
