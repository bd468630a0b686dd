// piggyback.js: the browser half of Piggyback's in-site messages, for any page
// of the site, from one script tag:
//
//   <script src="/piggyback.js" data-base="/cgi-bin/" data-lang="zh-CN" data-look="note"></script>
//
// It observes the page's own fetch() and XMLHttpRequest answers from the site's
// origin (any path; the answer's final URL, after redirects, must be the page's
// origin too), reads `site_messages` from every JSON answer, and
//   - shows each announced message once as a sticky note (告示贴), many at once
//     coalesced into one note that says how many it does not list;
//   - keeps the patent's two numbers as the server reports them: messages
//     announced and still unread (`delivered`, 已提送) and messages new this
//     time (`new`, 本次), in every [data-piggyback-count="delivered"|"new"]
//     element (a small counter of its own when the page has none);
//   - fires a `piggyback:messages` CustomEvent on document (detail: the member);
//   - acknowledges what it showed with `X-Piggyback-Ack: shown=<batches>` (the
//     batches shown and not yet known to be acknowledged) on its own requests
//     (GET <base>messages/status soon after a note, Piggyback.api), so an
//     announcement whose answer was lost is made again;
//   - when the page makes no request for the server's X-Poll-Interval, asks
//     GET <base>messages/status with If-None-Match (304 while nothing changed);
//     a hidden tab asks less often.
// The page's own requests are never changed (no header is added: a redirect to
// another origin would carry it there and force a CORS preflight), and the page
// never sees a difference: answers are read from a clone. Requests to other
// origins are not looked at; its own requests never follow a redirect. Its styles are injected once, every rule under the
// `piggyback-` prefix. Members this file does not know are ignored.
(function (global) {
  "use strict";
  if (global.Piggyback && global.Piggyback.version) return; // loaded twice

  var doc = global.document;
  var script = doc.currentScript || (function () {
    var all = doc.querySelectorAll("script[src*='piggyback']");
    return all[all.length - 1] || null;
  })();
  function setting(name, fallback) {
    var v = script && script.getAttribute("data-" + name);
    return v == null || v === "" ? fallback : v;
  }

  var BASE = setting("base", "/cgi-bin/").replace(/\/?$/, "/");
  var LOOK = setting("look", "note");              // "note" (yellow sticky) or "plain"
  var COUNTER = setting("counter", "auto");        // "auto": own counter when the page has none; "off"
  var COALESCE_AT = 3;                             // this many new items or more: one note
  var LIST_AT_MOST = 3;                            // lines a coalesced note lists
  var MAX_NOTES = 5;                               // notes on screen at once
  var DEFAULT_POLL_S = 30;                         // until the server says X-Poll-Interval
  var HIDDEN_FACTOR = 4;                           // a hidden tab polls this much less often
  var SEEN_KEY = "piggyback:seen";                 // localStorage: "id@sent_at" already shown
  var ACK_KEY = "piggyback:shown:";                // localStorage: batches shown, not yet acknowledged, per user
  var ACK_MAX = 64;                                // the server reads at most 64 batches
  var LANG_KEY = "piggyback:lang";                 // localStorage: the language switch
  var SEEN_MAX = 500;
  var ORIGIN = global.location.origin;
  var ACK_DELAY_MS = 500;                          // a note's acknowledgement waits this long for company

  // ---- words -------------------------------------------------------------
  var WORDS = {
    en: {
      delivered: "Shown, still unread",
      delivered_hint: "messages already shown to you that you have not read yet",
      "new": "New this time",
      new_hint: "messages this page has just announced",
      notes: "Message notes",
      dismiss: "Dismiss",
      open: "Open",
      title_note: "Message from {from}",
      title_friend_request: "Friend request from {from}",
      title_friend_accept: "{from} accepted your friend request",
      title_comment: "New comment from {from}",
      subject_friend_request: "{from} wants to be your friend",
      subject_friend_accept: "{from} is now your friend",
      subject_comment: "{from} commented on your post",
      body_friend_request: "{from} asked to be your friend. Accept or decline on your friends page.",
      body_friend_accept: "{from} and you are friends now.",
      coalesced: "{n} new messages",
      coalesced_from: "{n} new messages from {who}",
      and_more: "and {n} more",
    },
    zh: {
      delivered: "已提送未读",
      delivered_hint: "已经提示过、但你还没有读的消息",
      "new": "本次新消息",
      new_hint: "本页刚刚提示的消息",
      notes: "消息告示贴",
      dismiss: "关闭",
      open: "打开",
      title_note: "来自 {from} 的消息",
      title_friend_request: "{from} 请求加你为好友",
      title_friend_accept: "{from} 接受了你的好友请求",
      title_comment: "{from} 评论了你的帖子",
      subject_friend_request: "{from} 想加你为好友",
      subject_friend_accept: "{from} 已成为你的好友",
      subject_comment: "{from} 评论了你的帖子",
      body_friend_request: "{from} 请求加你为好友。请在好友页面接受或拒绝。",
      body_friend_accept: "你和 {from} 已经是好友了。",
      coalesced: "{n} 条新消息",
      coalesced_from: "{who} 发来 {n} 条新消息",
      and_more: "另有 {n} 条",
    },
  };
  function pickLang(l) {
    return /^zh\b/i.test(l || "") ? "zh" : "en";
  }
  var lang = pickLang(setting("lang", null) || readString(LANG_KEY) ||
    (global.navigator && (global.navigator.language || "")));
  function t(key, args) {
    var s = (WORDS[lang] && WORDS[lang][key]) || WORDS.en[key] || key;
    return s.replace(/\{(\w+)\}/g, function (_, k) { return args && args[k] != null ? String(args[k]) : ""; });
  }

  // ---- storage -----------------------------------------------------------
  function readString(key) {
    try { return global.localStorage.getItem(key); } catch (e) { return null; }
  }
  function writeString(key, value) {
    try {
      if (value == null) global.localStorage.removeItem(key);
      else global.localStorage.setItem(key, value);
    } catch (e) { /* private mode: memory only */ }
  }

  var state = {
    user: null,           // who the acknowledgements belong to, when the page says
    ack: [],              // batches shown and not yet acknowledged, when not stored
    delivered: null,
    fresh: null,          // the server's `new` of the latest answer
    lastActivity: Date.now(),
    etag: null,
    pollS: DEFAULT_POLL_S,
    pollStopped: false,   // 401 on the idle check: wait for an identified answer
    onOpen: null,
  };
  var shownHere = {};

  function ackKey() { return ACK_KEY + (state.user || ""); }
  // The batches shown and not yet acknowledged. Acknowledging by name (not "every
  // batch up to N") keeps a lost answer's batch unacknowledged, so the server
  // announces its messages again after the lease (docs/API.md, Acknowledgements).
  function pendingAcks() {
    var stored = readString(ackKey());
    var list = stored == null ? state.ack : stored.split(",");
    return list.map(Number).filter(function (n) { return isFinite(n) && n > 0; });
  }
  function storeAcks(list) {
    if (list.length > ACK_MAX) list = list.slice(list.length - ACK_MAX);
    state.ack = list;
    writeString(ackKey(), list.join(","));
  }
  // The header value for a request about to go: what it carries is what its
  // answer, when it comes with site_messages, proves acknowledged.
  function ackHeader() { return "shown=" + pendingAcks().join(","); }
  function carriedOf(value) {
    var m = /^shown=([\d,]*)$/.exec(value || "");
    return m ? m[1].split(",").filter(Boolean).map(Number) : [];
  }
  function acknowledged(carried) {
    if (!carried.length) return;
    storeAcks(pendingAcks().filter(function (b) { return carried.indexOf(b) < 0; }));
  }
  function shownBatch(batch) {
    if (typeof batch !== "number" || !(batch > 0)) return;
    var list = pendingAcks();
    if (list.indexOf(batch) < 0) list.push(batch);
    storeAcks(list);
  }

  function seenList() {
    try {
      var list = JSON.parse(readString(SEEN_KEY) || "[]");
      return Array.isArray(list) ? list : [];
    } catch (e) { return []; }
  }
  function remember(keys) {
    if (!keys.length) return;
    keys.forEach(function (k) { shownHere[k] = true; });
    var list = seenList();
    keys.forEach(function (k) { if (list.indexOf(k) < 0) list.push(k); });
    if (list.length > SEEN_MAX) list = list.slice(list.length - SEEN_MAX);
    writeString(SEEN_KEY, JSON.stringify(list));
  }
  // A message's identity: its id and when it was sent, so a database started
  // afresh (ids counted from 1 again) is not mistaken for the old one.
  function keyOf(it) { return it.id + "@" + (it.sent_at || ""); }
  function seen(it) { var k = keyOf(it); return shownHere[k] === true || seenList().indexOf(k) >= 0; }

  // ---- styles --------------------------------------------------------------
  var CSS = [
    ".piggyback-notes{position:fixed;right:16px;bottom:16px;z-index:2147483000;display:flex;",
    "flex-direction:column;gap:10px;align-items:flex-end;max-width:min(22rem,calc(100vw - 32px));",
    "margin:0;padding:0;pointer-events:none;font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,",
    "'Noto Sans','Noto Sans CJK SC','PingFang SC','Microsoft YaHei','WenQuanYi Micro Hei',sans-serif;}",
    ".piggyback-note{pointer-events:auto;box-sizing:border-box;position:relative;width:100%;margin:0;",
    "padding:10px 34px 10px 12px;color:#1f2328;text-align:left;}",
    ".piggyback-look-note .piggyback-note{background:#fff59d;border-bottom:3px solid #e6d85a;",
    "box-shadow:0 6px 14px rgba(0,0,0,.18);transform:rotate(-1deg);}",
    ".piggyback-look-note .piggyback-note:nth-child(even){transform:rotate(.8deg);}",
    ".piggyback-look-plain .piggyback-note{background:#fff;border:1px solid #d0d7de;border-radius:8px;",
    "box-shadow:0 4px 12px rgba(0,0,0,.12);}",
    ".piggyback-note-title{font-weight:700;margin:0 0 2px;}",
    ".piggyback-note-line{margin:0;overflow-wrap:anywhere;}",
    ".piggyback-note-more{margin:2px 0 0;font-style:italic;}",
    ".piggyback-note button{font:inherit;color:inherit;cursor:pointer;}",
    ".piggyback-note-close{position:absolute;top:4px;right:4px;border:0;background:none;",
    "font-size:18px;line-height:1;padding:2px 6px;}",
    ".piggyback-note-open{margin-top:6px;border:1px solid rgba(0,0,0,.35);background:rgba(255,255,255,.6);",
    "border-radius:4px;padding:1px 8px;}",
    ".piggyback-note button:focus-visible{outline:2px solid #0b6bcb;outline-offset:1px;}",
    ".piggyback-counter{position:fixed;left:16px;bottom:16px;z-index:2147483000;display:flex;gap:12px;",
    "box-sizing:border-box;margin:0;padding:6px 10px;background:#fff;color:#1f2328;border:1px solid #d0d7de;",
    "border-radius:16px;font:13px/1.3 system-ui,sans-serif;box-shadow:0 2px 6px rgba(0,0,0,.1);}",
    ".piggyback-counter-item{margin:0;padding:0;}",
    ".piggyback-counter-n{font-weight:700;margin-left:4px;}",
  ].join("");
  function injectStyle() {
    if (doc.getElementById("piggyback-style")) return;
    var s = doc.createElement("style");
    s.id = "piggyback-style";
    s.textContent = CSS;
    (doc.head || doc.documentElement).appendChild(s);
  }

  function el(tag, cls, text) {
    var e = doc.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = String(text);
    return e;
  }

  // ---- counters ------------------------------------------------------------
  var ownCounter = null;
  function ensureCounter() {
    if (COUNTER === "off" || ownCounter || !doc.body) return;
    if (doc.querySelector("[data-piggyback-count]")) return; // the page shows its own
    ownCounter = el("div", "piggyback-counter");
    ownCounter.setAttribute("role", "status");
    ["delivered", "new"].forEach(function (which) {
      var item = el("span", "piggyback-counter-item");
      var label = el("span", "piggyback-counter-label");
      label.setAttribute("data-piggyback-word", which);
      var n = el("span", "piggyback-counter-n", "–");
      n.setAttribute("data-piggyback-count", which);
      item.appendChild(label);
      item.appendChild(n);
      ownCounter.appendChild(item);
    });
    doc.body.appendChild(ownCounter);
  }
  function render() {
    ensureCounter();
    var values = { delivered: state.delivered, "new": state.fresh };
    Array.prototype.forEach.call(doc.querySelectorAll("[data-piggyback-count]"), function (e) {
      var which = e.getAttribute("data-piggyback-count");
      if (!(which in values)) return;
      var v = values[which];
      e.textContent = v == null ? "–" : String(v);
      e.setAttribute("data-piggyback-zero", v ? "false" : "true");
      e.title = t(which + "_hint");
    });
    Array.prototype.forEach.call(doc.querySelectorAll("[data-piggyback-word]"), function (e) {
      var w = e.getAttribute("data-piggyback-word");
      if (WORDS.en[w] != null) e.textContent = t(w);
    });
    if (notesBox) notesBox.setAttribute("aria-label", t("notes"));
  }

  // ---- notes -----------------------------------------------------------------
  var notesBox = null;
  function box() {
    if (notesBox && notesBox.isConnected) return notesBox;
    injectStyle();
    notesBox = el("div", "piggyback-notes piggyback-look-" + (LOOK === "plain" ? "plain" : "note"));
    notesBox.id = "piggyback-notes";
    // Additions are read out politely; the notes never take focus.
    notesBox.setAttribute("role", "region");
    notesBox.setAttribute("aria-live", "polite");
    notesBox.setAttribute("aria-relevant", "additions");
    notesBox.setAttribute("aria-label", t("notes"));
    doc.body.appendChild(notesBox);
    return notesBox;
  }

  function showNote(title, lines, moreLine, ids, openId) {
    var b = box();
    var note = el("div", "piggyback-note");
    note.setAttribute("data-piggyback-toast", ids.join(" "));
    note.appendChild(el("p", "piggyback-note-title", title));
    lines.forEach(function (l) { note.appendChild(el("p", "piggyback-note-line", l)); });
    if (moreLine) note.appendChild(el("p", "piggyback-note-more", moreLine));
    function dismiss() {
      // Keep keyboard users where they were: move focus to the next note's
      // button only when it was on this note, else leave it alone.
      var hadFocus = note.contains(doc.activeElement);
      var next = note.nextElementSibling || note.previousElementSibling;
      note.remove();
      if (hadFocus && next) {
        var btn = next.querySelector("button");
        if (btn) btn.focus();
      }
    }
    if (typeof state.onOpen === "function") {
      var open = el("button", "piggyback-note-open", t("open"));
      open.type = "button";
      open.addEventListener("click", function () { dismiss(); state.onOpen(openId); });
      note.appendChild(open);
    }
    var close = el("button", "piggyback-note-close", "×");
    close.type = "button";
    close.setAttribute("aria-label", t("dismiss") + ": " + title);
    close.addEventListener("click", dismiss);
    note.appendChild(close);
    note.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape") { ev.stopPropagation(); dismiss(); }
    });
    b.appendChild(note);
    while (b.children.length > MAX_NOTES) b.removeChild(b.firstChild);
    return note;
  }

  function fill(s, it) { return t(s, { from: it.from }); }
  // A notice the server wrote (friend request, comment) is worded here in the
  // reader's language from its kind; a person's note keeps its own subject.
  function subjectOf(it) {
    if (it.kind && it.kind !== "note" && WORDS.en["subject_" + it.kind]) return fill("subject_" + it.kind, it);
    return it.subject || "";
  }
  // Whether the text of a message is a person's own words (a note, a comment),
  // not a notice worded by the server.
  function ownWords(it) { return !it.kind || it.kind === "note" || it.kind === "comment"; }
  function titleOf(it) {
    return fill(WORDS.en["title_" + it.kind] ? "title_" + it.kind : "title_note", it);
  }

  // Shows notes for the items not shown before; returns how many.
  // total: how many this answer announces (new + repeated).
  function announce(items, total) {
    var fresh = items.filter(function (it) { return it && typeof it.id === "number" && !seen(it); });
    var unlisted = Math.max(0, total - items.length); // announced, but past PIGGYBACK_MAX_ITEMS
    remember(fresh.map(keyOf));
    var count = fresh.length + unlisted;
    if (count === 0) return 0;
    if (count >= COALESCE_AT || unlisted > 0) {
      var who = [];
      fresh.forEach(function (it) { if (who.indexOf(it.from) < 0) who.push(it.from); });
      var title = who.length === 1 && unlisted === 0
        ? t("coalesced_from", { n: count, who: who[0] })
        : t("coalesced", { n: count });
      var listed = fresh.slice(0, LIST_AT_MOST);
      var left = count - listed.length;
      showNote(title,
        listed.map(function (it) { var s = subjectOf(it); return it.from + (s ? ": " + s : ""); }),
        left > 0 ? t("and_more", { n: left }) : null,
        fresh.map(function (it) { return String(it.id); }), null);
    } else {
      fresh.forEach(function (it) {
        // With the recipient's message_preview choice, subject and snippet may be
        // empty: then the note names the sender only.
        var lines = [subjectOf(it), ownWords(it) ? it.snippet : ""].filter(Boolean);
        showNote(titleOf(it), lines, null, [String(it.id)], it.id);
      });
    }
    return count;
  }

  var channel = null;
  try {
    channel = typeof BroadcastChannel === "function" ? new BroadcastChannel("piggyback") : null;
  } catch (e) { channel = null; }

  var early = [];
  // The one place site_messages is read.
  function handle(sm, fromOtherTab) {
    if (!sm || typeof sm !== "object" || Array.isArray(sm)) return;
    if (state.pollStopped) {
      // Someone is signed in again: the idle check resumes.
      state.pollStopped = false;
      schedule();
    }
    if (typeof sm.delivered === "number") state.delivered = sm.delivered;
    if (typeof sm["new"] === "number") state.fresh = sm["new"];
    var items = Array.isArray(sm.items) ? sm.items : [];
    if (fromOtherTab) {
      // The other tab showed these: only remember them and take its numbers.
      remember(items.filter(function (it) { return it && typeof it.id === "number"; }).map(keyOf));
      render();
      return;
    }
    if (!doc.body) {
      // An answer before the page has a body (the tag is in <head>): shown, and
      // acknowledged, once there is somewhere to show it.
      early.push(sm);
      return;
    }
    var total = (typeof sm["new"] === "number" ? sm["new"] : items.length) +
      (typeof sm.repeated === "number" ? sm.repeated : 0);
    announce(items, total);
    shownBatch(sm.batch);
    render();
    if (channel) {
      try { channel.postMessage({ delivered: sm.delivered, "new": sm["new"], items: items }); } catch (e) { /* ignore */ }
    }
    try {
      doc.dispatchEvent(new CustomEvent("piggyback:messages", { detail: sm }));
    } catch (e) { /* a listener's bug is not ours */ }
  }
  if (channel) channel.onmessage = function (ev) { handle(ev.data, true); };

  // ---- observing the page's requests -------------------------------------------
  function sameOrigin(url) {
    try { return new URL(url, global.location.href).origin === ORIGIN; } catch (e) { return false; }
  }
  function isJson(type) { return /[\/+]json\b/i.test(type || ""); }
  // An answer to a request that carried the acknowledgement `carried` (our own
  // requests only; null for the page's).
  function fromAnswer(data, carried) {
    if (!(data && typeof data === "object" && !Array.isArray(data))) return;
    if (data.site_messages && typeof data.site_messages === "object") acknowledged(carriedOf(carried));
    handle(data.site_messages, false);
    if (carried == null && data.site_messages && typeof data.site_messages.batch === "number") ackSoon();
  }
  function activity() { state.lastActivity = Date.now(); schedule(); }
  // Whether a fetch answer came from the page's origin: its final URL, after any
  // redirect (an opaque or opaque-redirect answer has none and is never read).
  function fromOrigin(res) {
    return (res.type === "basic" || res.type === "default") && !!res.url && sameOrigin(res.url);
  }
  // Reads site_messages from a clone, so the page reads its answer as if we were not here.
  function observe(res, carried) {
    if (fromOrigin(res) && res.status !== 304 && isJson(res.headers.get("Content-Type"))) {
      res.clone().json().then(function (data) { fromAnswer(data, carried); },
        function () { /* not JSON after all, or cut off */ });
    }
    return res;
  }

  var realFetch = global.fetch ? global.fetch.bind(global) : null;
  if (realFetch) {
    // The page's own fetch: passed on exactly as called.
    global.fetch = function (input, init) {
      var url = typeof input === "string" ? input : (input && input.url) || String(input);
      if (!sameOrigin(url)) return realFetch(input, init);
      activity();
      return realFetch(input, init).then(function (res) { return observe(res, null); });
    };
  }
  // Our own request to the site: it carries the acknowledgement and never follows a
  // redirect, so neither can reach another origin. Its answer is read like the
  // page's, as proof that the acknowledgement went through.
  function ownFetch(path, opts) {
    if (!realFetch) return Promise.reject(new Error("no fetch"));
    if (!sameOrigin(BASE + path)) return Promise.reject(new Error("data-base is not this site's origin"));
    var carried = ackHeader();
    opts.headers["X-Piggyback-Ack"] = carried;
    opts.credentials = "same-origin";
    opts.redirect = "error";
    return realFetch(BASE + path, opts).then(function (res) {
      return { res: res, carried: carried };
    });
  }

  var XHR = global.XMLHttpRequest;
  if (XHR && XHR.prototype) {
    var open = XHR.prototype.open, send = XHR.prototype.send;
    // One listener per send, for that send only: a reused XHR opened again (to
    // another origin, say) drops the listener of its earlier send.
    function forget(xhr) {
      var pb = xhr.__piggyback;
      if (pb && pb.listener) {
        xhr.removeEventListener("load", pb.listener);
        xhr.removeEventListener("loadend", pb.done);
        pb.listener = null;
      }
    }
    XHR.prototype.open = function (method, url) {
      forget(this);
      this.__piggyback = { same: sameOrigin(url), listener: null, done: null };
      return open.apply(this, arguments);
    };
    XHR.prototype.send = function () {
      var pb = this.__piggyback;
      var xhr = this;
      if (pb && pb.same) {
        forget(xhr);
        activity();
        pb.listener = function () {
          // Only this send's answer, and only from this origin after any redirect.
          if (xhr.__piggyback !== pb || !sameOrigin(xhr.responseURL)) return;
          if (!isJson(xhr.getResponseHeader("Content-Type"))) return;
          var data = null;
          try {
            if (xhr.responseType === "json") data = xhr.response;
            else if (xhr.responseType === "" || xhr.responseType === "text") data = JSON.parse(xhr.responseText);
          } catch (e) { data = null; }
          fromAnswer(data, null);
        };
        pb.done = function () { if (xhr.__piggyback === pb) forget(xhr); };
        xhr.addEventListener("load", pb.listener);
        xhr.addEventListener("loadend", pb.done);
      }
      return send.apply(this, arguments);
    };
  }

  // ---- the idle check and the acknowledgement ----------------------------------
  var timer = null;
  var ackTimer = null;
  var hiddenPolls = 0;
  function interval() {
    var s = state.pollS * (doc.hidden ? Math.pow(HIDDEN_FACTOR, Math.min(hiddenPolls + 1, 3)) : 1);
    return s * 1000;
  }
  function schedule() {
    if (timer) global.clearTimeout(timer);
    timer = null;
    if (state.pollStopped) return;
    var wait = Math.max(1000, state.lastActivity + interval() - Date.now());
    timer = global.setTimeout(idleCheck, wait);
  }
  function idleCheck() {
    timer = null;
    if (Date.now() - state.lastActivity < interval() - 50) { schedule(); return; }
    hiddenPolls = doc.hidden ? hiddenPolls + 1 : 0;
    statusCheck(true);
  }
  // A batch was shown from the page's own answer (which carried no acknowledgement):
  // acknowledged soon by a request of our own, several notes with one.
  function ackSoon() {
    if (ackTimer || state.pollStopped || !pendingAcks().length) return;
    ackTimer = global.setTimeout(function () {
      ackTimer = null;
      if (pendingAcks().length) statusCheck(false);
    }, ACK_DELAY_MS);
  }
  // GET <base>messages/status: `conditional` sends If-None-Match (the idle check);
  // the acknowledgement asks without it, so that its answer records what it carries.
  function statusCheck(conditional) {
    var headers = { "Accept": "application/json" };
    if (conditional && state.etag) headers["If-None-Match"] = state.etag;
    state.lastActivity = Date.now();
    ownFetch("messages/status", { cache: "no-store", headers: headers })
      .then(function (sent) {
        var res = sent.res;
        var poll = parseInt(res.headers.get("X-Poll-Interval") || "", 10);
        if (isFinite(poll) && poll > 0) state.pollS = Math.min(poll, 3600);
        if (res.status === 401 || res.status === 403 || res.status === 404) {
          // Nobody signed in (or no such program): wait until the page's own
          // requests carry site_messages again.
          state.pollStopped = true;
          return null;
        }
        var tag = res.headers.get("ETag");
        if (res.status === 304) return null;
        if (tag && res.ok) state.etag = tag;
        return isJson(res.headers.get("Content-Type"))
          ? res.json().then(function (data) { fromAnswer(data, sent.carried); }) : null;
      })
      .catch(function () { /* offline a moment: try again at the next interval */ })
      .then(function () { state.lastActivity = Date.now(); schedule(); });
  }
  doc.addEventListener("visibilitychange", function () {
    if (!doc.hidden) hiddenPolls = 0;
    schedule();
  });

  // ---- the page's API ------------------------------------------------------------
  function ApiError(status, code, message, data) {
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.message = message;
    this.data = data;
  }
  ApiError.prototype = Object.create(Error.prototype);

  // api(method, path, body?) -> Promise of the parsed JSON. path is relative to
  // the base ("messages/42/read"). Rejects with an ApiError for a non-2xx answer
  // (status 0 when no answer arrived). It is our own request: it acknowledges
  // what was shown, follows no redirect, and its site_messages are handled here.
  function api(method, path, body) {
    var opts = { method: method, cache: "no-store", headers: { "Accept": "application/json" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    activity();
    return ownFetch(path, opts).then(function (sent) { return observe(sent.res, sent.carried); }).then(function (res) {
      var parse = isJson(res.headers.get("Content-Type")) && method !== "HEAD"
        ? res.json().catch(function () { return null; })
        : Promise.resolve({});
      return parse.then(function (data) {
        if (!res.ok || data == null) {
          var err = (data && data.error) || {};
          throw new ApiError(res.ok ? 0 : res.status, err.code || (res.ok ? "cut_off" : "http_" + res.status),
            err.message || res.statusText || "request failed", data);
        }
        return data;
      });
    }, function (e) {
      throw new ApiError(0, "network", (e && e.message) || "network error", null);
    });
  }

  var Piggyback = {
    version: 2,
    api: api,
    ApiError: ApiError,
    base: BASE,
    // The language the notes and counters speak ("en" or "zh"); setLang switches
    // and remembers it, then fires piggyback:lang on document.
    lang: function () { return lang; },
    setLang: function (l) {
      lang = pickLang(l);
      writeString(LANG_KEY, lang);
      render();
      doc.dispatchEvent(new CustomEvent("piggyback:lang", { detail: lang }));
    },
    words: WORDS,
    t: t,
    counters: function () { return { delivered: state.delivered, "new": state.fresh }; },
    // f(messageId or null) when a note's Open button is pressed.
    onOpen: function (f) { state.onOpen = f; },
    // Take away the note of one message (it is being read).
    dismiss: function (id) {
      Array.prototype.forEach.call(doc.querySelectorAll("[data-piggyback-toast]"), function (n) {
        if (n.getAttribute("data-piggyback-toast") === String(id)) n.remove();
      });
    },
    // The page knows who is signed in: acknowledgements are kept per user.
    setUser: function (name) {
      if ((name || null) === state.user) return;
      var carried = pendingAcks();
      state.user = name || null;
      if (state.user && carried.length && readString(ackKey()) == null) storeAcks(carried);
      state.etag = null;
      state.pollStopped = false;
      schedule();
    },
    // Forget what was shown (logout).
    reset: function () {
      shownHere = {};
      writeString(SEEN_KEY, null);
      state.delivered = null;
      state.fresh = null;
      state.etag = null;
      if (notesBox) notesBox.textContent = "";
      render();
    },
    // Seconds between idle checks, as the server last said.
    pollInterval: function () { return state.pollS; },
    // Seconds of quiet before the next idle check: longer while the tab is hidden.
    checkDelay: function () { return interval() / 1000; },
    _handle: handle,
  };
  global.Piggyback = Piggyback;

  function start() {
    injectStyle();
    early.splice(0).forEach(function (sm) { handle(sm, false); });
    render();
    schedule();
    ackSoon();
  }
  if (doc.readyState === "loading") doc.addEventListener("DOMContentLoaded", start);
  else start();
})(window);
