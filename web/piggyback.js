// piggyback.js: the browser half of Piggyback's in-site messages.
//
// Every call the page makes to /cgi-bin/* goes through Piggyback.api(), which
// wraps fetch(). Whatever the response (success or error), its JSON
// `site_messages` member is read here, in one place:
//   - the unread badge (#pb-unread) shows site_messages.unread;
//   - the "new" counter (#pb-new) counts messages announced to this browser
//     since the mailbox was last opened;
//   - each announced message becomes one sticky-note toast, exactly once:
//     messages already shown are remembered in localStorage and shared with other
//     tabs over BroadcastChannel, so neither a reload nor a second tab shows
//     one twice; many at once are coalesced into one note.
// Every request carries X-Piggyback-Ack, the last announcement batch this
// browser showed for the signed-in user, so that an announcement whose
// response was lost is made again (as items with repeat: true; those already
// shown are dropped here by id). Members this file does not know are ignored.
// No polling: when the page has made no request for IDLE_MS, one cheap GET
// keeps the announcements coming.
(function (global) {
  "use strict";

  var CGI = "/cgi-bin/";
  var IDLE_MS = 60000;           // idle fallback: a GET after this much quiet
  var COALESCE_AT = 3;           // this many new items or more: one note
  var MAX_TOASTS = 5;            // notes on screen at once
  var SEEN_KEY = "pb_seen";      // localStorage: "id@sent_at" already shown
  var NEW_KEY = "pb_new_count";  // localStorage: the "new" counter
  var USER_KEY = "pb_user";      // localStorage: who the batches below belong to
  var ACK_PREFIX = "pb_ack:";    // localStorage: last batch shown, per user
  var SEEN_MAX = 500;

  var state = {
    user: readString(USER_KEY),
    ack: 0,                      // last batch shown while the user is unknown
    unread: null,
    newCount: readInt(NEW_KEY),
    lastRequestAt: Date.now(),
    listeners: [],
    onOpen: null,
  };
  var channel = null;
  try {
    channel = typeof BroadcastChannel === "function" ? new BroadcastChannel("piggyback") : null;
  } catch (e) {
    channel = null;
  }

  function readString(key) {
    try {
      return global.localStorage.getItem(key) || null;
    } catch (e) {
      return null;
    }
  }

  function writeString(key, value) {
    try {
      if (value == null) global.localStorage.removeItem(key);
      else global.localStorage.setItem(key, value);
    } catch (e) { /* private mode: memory only */ }
  }

  // The batch to acknowledge: the last one shown to this user.
  function currentAck() {
    return state.user ? readInt(ACK_PREFIX + state.user) : state.ack;
  }

  // Remember the batch just shown. Always the latest answer's, even when it
  // is lower than the one remembered: batches only grow for a user, so a
  // lower one means a database started afresh, and acknowledging the old,
  // higher number would acknowledge announcements this browser never showed.
  // (Two answers arriving out of order cost at most one repeat, dropped here.)
  function shownBatch(batch) {
    if (typeof batch !== "number" || !(batch > 0)) return;
    if (state.user) writeString(ACK_PREFIX + state.user, String(batch));
    else state.ack = batch;
  }

  function setUser(name) {
    if (name === state.user) return;
    var carried = state.ack;
    state.user = name || null;
    state.ack = 0;
    writeString(USER_KEY, state.user);
    if (state.user && carried > 0) writeString(ACK_PREFIX + state.user, String(carried));
  }

  function readInt(key) {
    try {
      var v = parseInt(global.localStorage.getItem(key) || "0", 10);
      return isFinite(v) && v > 0 ? v : 0;
    } catch (e) {
      return 0;
    }
  }

  function seenIds() {
    try {
      var list = JSON.parse(global.localStorage.getItem(SEEN_KEY) || "[]");
      return Array.isArray(list) ? list : [];
    } catch (e) {
      return [];
    }
  }

  function rememberIds(ids) {
    if (!ids.length) return;
    var list = seenIds();
    ids.forEach(function (id) {
      if (list.indexOf(id) < 0) list.push(id);
    });
    if (list.length > SEEN_MAX) list = list.slice(list.length - SEEN_MAX);
    try {
      global.localStorage.setItem(SEEN_KEY, JSON.stringify(list));
    } catch (e) { /* private mode: the in-memory check below still holds */ }
  }

  var shownHere = {};
  function alreadySeen(key) {
    return shownHere[key] === true || seenIds().indexOf(key) >= 0;
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = String(text);
    return e;
  }

  function setNewCount(n) {
    state.newCount = Math.max(0, n | 0);
    try {
      global.localStorage.setItem(NEW_KEY, String(state.newCount));
    } catch (e) { /* ignore */ }
    render();
  }

  function render() {
    var u = document.getElementById("pb-unread");
    if (u) {
      u.textContent = state.unread == null ? "–" : String(state.unread);
      u.classList.toggle("pb-zero", !state.unread);
    }
    var n = document.getElementById("pb-new");
    if (n) {
      n.textContent = String(state.newCount);
      n.classList.toggle("pb-zero", !state.newCount);
    }
    state.listeners.forEach(function (f) {
      try { f({ unread: state.unread, newCount: state.newCount }); } catch (e) { /* a listener's bug */ }
    });
  }

  function toastBox() {
    var box = document.getElementById("pb-toasts");
    if (!box) {
      box = el("div", "pb-toasts");
      box.id = "pb-toasts";
      box.setAttribute("aria-live", "polite");
      document.body.appendChild(box);
    }
    return box;
  }

  function names(items) {
    var out = [];
    items.forEach(function (it) {
      if (out.indexOf(it.from) < 0) out.push(it.from);
    });
    return out;
  }

  function showToast(title, lines, ids, openId) {
    var box = toastBox();
    var t = el("div", "pb-toast");
    t.setAttribute("role", "status");
    t.dataset.ids = ids.join(",");
    var close = el("button", "pb-toast-close", "×");
    close.type = "button";
    close.setAttribute("aria-label", "dismiss");
    close.addEventListener("click", function (ev) {
      ev.stopPropagation();
      t.remove();
    });
    t.appendChild(close);
    t.appendChild(el("div", "pb-toast-title", title));
    lines.forEach(function (l) { t.appendChild(el("div", "pb-toast-line", l)); });
    t.addEventListener("click", function () {
      t.remove();
      if (typeof state.onOpen === "function") state.onOpen(openId);
    });
    box.appendChild(t);
    while (box.children.length > MAX_TOASTS) box.removeChild(box.firstChild);
  }

  // A message's identity for de-duplication: its id and when it was sent, so
  // a database started afresh (ids counted from 1 again) is not mistaken for
  // the old one.
  function keyOf(it) {
    return it.id + "@" + (it.sent_at || "");
  }

  var TITLES = {
    note: "New message from ",
    friend_request: "Friend request from ",
    friend_accept: "New friend: ",
    comment: "New comment from ",
  };

  // Show notes for items not shown before; returns how many were new here.
  // total: how many this response announces (new + repeated).
  function announce(items, total, more) {
    var fresh = items.filter(function (it) {
      return it && typeof it.id === "number" && !alreadySeen(keyOf(it));
    });
    var keys = fresh.map(keyOf);
    keys.forEach(function (k) { shownHere[k] = true; });
    rememberIds(keys);
    var extra = more ? Math.max(0, total - items.length) : 0;
    var count = fresh.length + extra;
    if (count === 0) return 0;
    if (count >= COALESCE_AT || extra > 0) {
      var who = names(fresh);
      var list = who.slice(0, 3).join(", ") + (who.length > 3 || extra > 0 ? "…" : "");
      showToast(count + " new messages" + (list ? " from " + list : ""),
        fresh.slice(0, 3).map(function (it) { return it.from + (it.subject ? ": " + it.subject : ""); }),
        keys, null);
    } else {
      fresh.forEach(function (it) {
        // With the recipient's message_preview choice, subject and snippet
        // may be empty: then the note names the sender only.
        var lines = [it.subject, it.snippet].filter(function (l) { return l; });
        showToast((TITLES[it.kind] || TITLES.note) + it.from, lines, [keyOf(it)], it.id);
      });
    }
    return count;
  }

  // The one place site_messages is read.
  function handleSiteMessages(sm, fromOtherTab) {
    if (!sm || typeof sm !== "object") return;
    if (typeof sm.unread === "number") state.unread = sm.unread;
    var items = Array.isArray(sm.items) ? sm.items : [];
    var total = (typeof sm.new === "number" ? sm.new : items.length) +
      (typeof sm.repeated === "number" ? sm.repeated : 0);
    if (fromOtherTab) {
      // The other tab showed these; just remember them.
      var keys = items.filter(function (it) { return it && typeof it.id === "number"; }).map(keyOf);
      keys.forEach(function (k) { shownHere[k] = true; });
      rememberIds(keys);
      state.newCount = readInt(NEW_KEY);
      render();
      return;
    }
    var added = announce(items, total, sm.more === true);
    shownBatch(sm.batch);
    if (added > 0) setNewCount(state.newCount + added); else render();
    if (channel && (added > 0 || typeof sm.unread === "number")) {
      try {
        channel.postMessage({ unread: sm.unread, new: total, items: items, more: sm.more === true });
      } catch (e) { /* ignore */ }
    }
  }

  if (channel) {
    channel.onmessage = function (ev) { handleSiteMessages(ev.data, true); };
  }
  global.addEventListener("storage", function (ev) {
    if (ev.key === NEW_KEY) {
      state.newCount = readInt(NEW_KEY);
      render();
    }
  });

  function ApiError(status, code, message, data) {
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.message = message;
    this.data = data;
  }
  ApiError.prototype = Object.create(Error.prototype);

  // api(method, path, body?) -> Promise of the parsed JSON (or {} for none).
  // path is relative to /cgi-bin/ ("messages/42/read"). Rejects with an
  // ApiError for a non-2xx status, after its site_messages were handled.
  function api(method, path, body) {
    var opts = {
      method: method,
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Accept": "application/json", "X-Piggyback-Ack": String(currentAck()) },
    };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    state.lastRequestAt = Date.now();
    return global.fetch(CGI + path, opts).then(function (res) {
      var type = res.headers.get("Content-Type") || "";
      var parse = type.indexOf("json") >= 0 && method !== "HEAD"
        ? res.json().catch(function () { return {}; })
        : Promise.resolve({});
      return parse.then(function (data) {
        if (data && typeof data === "object") handleSiteMessages(data.site_messages, false);
        if (!res.ok) {
          var err = (data && data.error) || {};
          throw new ApiError(res.status, err.code || "http_" + res.status,
            err.message || res.statusText || "request failed", data);
        }
        return data || {};
      });
    });
  }

  // Idle fallback: no request for IDLE_MS -> one cheap GET.
  var idleTimer = null;
  var idleEnabled = false;
  function startIdle(path) {
    idleEnabled = true;
    if (idleTimer) return;
    idleTimer = global.setInterval(function () {
      if (!idleEnabled) return;
      if (Date.now() - state.lastRequestAt >= Piggyback.idleMs) {
        api("GET", path || "profile").catch(function () { /* shown elsewhere */ });
      }
    }, 5000);
  }
  function stopIdle() {
    idleEnabled = false;
  }

  var Piggyback = {
    api: api,
    ApiError: ApiError,
    idleMs: IDLE_MS,
    startIdle: startIdle,
    stopIdle: stopIdle,
    // The mailbox was opened: the "new" counter starts again from zero.
    clearNew: function () { setNewCount(0); },
    // f({unread, newCount}) after every change of the counters.
    onCounters: function (f) { state.listeners.push(f); render(); },
    // f(messageId or null) when a note is clicked.
    onOpen: function (f) { state.onOpen = f; },
    // Take away the note of one message (it is being read).
    dismiss: function (id) {
      Array.prototype.forEach.call(document.querySelectorAll(".pb-toast"), function (t) {
        var keys = (t.dataset.ids || "").split(",");
        if (keys.length === 1 && keys[0].split("@")[0] === String(id)) t.remove();
      });
    },
    // The app learned who is signed in (acknowledgements are per user).
    setUser: setUser,
    counters: function () { return { unread: state.unread, newCount: state.newCount }; },
    // Forget everything about the last user (logout).
    reset: function () {
      setUser(null);
      state.unread = null;
      shownHere = {};
      try {
        global.localStorage.removeItem(SEEN_KEY);
        global.localStorage.removeItem(NEW_KEY);
      } catch (e) { /* ignore */ }
      state.newCount = 0;
      var box = document.getElementById("pb-toasts");
      if (box) box.textContent = "";
      render();
    },
    _handleSiteMessages: handleSiteMessages,
  };
  global.Piggyback = Piggyback;
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", render);
  } else {
    render();
  }
})(window);
