// app.js: the demo site's views (login, profile, friends, posts, mailbox).
// Every request goes through Piggyback.api (piggyback.js), so every response
// can carry site_messages. Routing is by location.hash.
(function () {
  "use strict";
  var api = Piggyback.api;
  var view = document.getElementById("view");
  var me = null;

  // h("div.card", {onclick: f}, child, "text", ...) -> element
  function h(spec) {
    var parts = spec.split(".");
    var e = document.createElement(parts[0] || "div");
    if (parts.length > 1) e.className = parts.slice(1).join(" ");
    var i = 1;
    var attrs = arguments[1];
    if (attrs && typeof attrs === "object" && !(attrs instanceof Node) && !Array.isArray(attrs)) {
      Object.keys(attrs).forEach(function (k) {
        if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), attrs[k]);
        else if (k === "text") e.textContent = attrs[k];
        else if (attrs[k] !== false && attrs[k] != null) e.setAttribute(k, attrs[k] === true ? "" : attrs[k]);
      });
      i = 2;
    }
    for (; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }
  function add(e, c) {
    if (c == null || c === false) return;
    if (Array.isArray(c)) c.forEach(function (x) { add(e, x); });
    else e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  function show() {
    view.textContent = "";
    for (var i = 0; i < arguments.length; i++) add(view, arguments[i]);
  }
  function when(t) {
    if (!t) return "";
    var d = new Date(t);
    return isNaN(d) ? String(t) : d.toLocaleString();
  }
  function errorBox(err) {
    return h("div.error", { role: "alert" }, err && err.message ? err.message : String(err));
  }
  function fail(err) {
    if (err && err.status === 401) { setUser(null); location.hash = "#/login"; return; }
    show(errorBox(err));
  }
  function formValues(form) {
    var out = {};
    Array.prototype.forEach.call(form.elements, function (f) { if (f.name) out[f.name] = f.value; });
    return out;
  }
  // A form whose submit calls f(values) and shows its error in place.
  function form(cls, fields, label, f) {
    var err = h("div");
    var btn = h("button.primary", { type: "submit" }, label);
    var fm = h("form." + cls, {
      onsubmit: function (ev) {
        ev.preventDefault();
        err.textContent = "";
        btn.disabled = true;
        Promise.resolve(f(formValues(fm), fm)).catch(function (e) {
          if (e && e.status === 401) return fail(e);
          err.appendChild(errorBox(e));
        }).then(function () { btn.disabled = false; });
      },
    }, fields, err, h("div", btn));
    return fm;
  }
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function setUser(name) {
    me = name;
    Piggyback.setUser(name);
    document.getElementById("nav").hidden = !name;
    document.getElementById("logout").hidden = !name;
    document.getElementById("who").textContent = name ? "signed in as " + name : "";
    if (name) Piggyback.startIdle("profile"); else Piggyback.stopIdle();
  }
  function nameOf(data) {
    if (!data || typeof data !== "object") return null;
    var u = data.user || data.session || data.profile || data;
    if (typeof u === "string") return u;
    return (u && (u.name || u.user)) || data.name || null;
  }

  // --- login -------------------------------------------------------------
  function loginView() {
    show(h("div.login.card",
      h("h1", "Sign in"),
      form("stack.sign-in", [
        h("input", { name: "name", placeholder: "user name", autocomplete: "username", required: true }),
        h("input", { name: "password", type: "password", placeholder: "password", autocomplete: "current-password", required: true }),
      ], "Sign in", function (v) {
        Piggyback.reset();  // before: the answer may already announce messages
        return api("POST", "session", { name: v.name, password: v.password }).then(function (data) {
          setUser(nameOf(data) || v.name);
          location.hash = "#/posts";
          // The login response names no user's messages yet: ask once now.
          return api("GET", "profile").catch(function () {});
        });
      }),
      h("details",
        h("summary.meta", "Sign in with a session token"),
        h("p.meta", "An operator can make one with: piggyback token NAME --ttl 1d"),
        form("stack.token-sign-in", [h("input", { name: "token", placeholder: "pb_session token", required: true })],
          "Use token", function (v) {
            document.cookie = "pb_session=" + encodeURIComponent(v.token.trim()) + "; path=/; SameSite=Lax";
            Piggyback.reset();
            return api("GET", "profile").then(function (data) {
              setUser(nameOf(data));
              location.hash = "#/posts";
            });
          }))));
  }

  // --- profile -----------------------------------------------------------
  function profileView(user) {
    api("GET", "profile" + (user ? "?user=" + encodeURIComponent(user) : "")).then(function (data) {
      var p = data.profile || {};
      var mine = !user || user === me;
      show(
        h("h1", p.display_name || p.name),
        h("div.card",
          h("div.meta", "@" + p.name + " · joined " + when(p.joined_at)),
          h("p.body", p.bio || h("span.empty", "no bio yet")),
          h("div.meta", (p.friends || 0) + " friends · " + (p.posts || 0) + " posts")),
        mine && h("h2", "Edit"),
        mine && form("stack.card", [
          h("input", { name: "display_name", value: p.display_name || "", placeholder: "display name" }),
          h("textarea", { name: "bio", placeholder: "about you" }, p.bio || ""),
          p.message_preview && h("label.meta", "Message notes show: ",
            h("select", { name: "message_preview" },
              [["full", "sender, subject and text"], ["subject", "sender and subject"], ["sender", "sender only"]]
                .map(function (o) { return h("option", { value: o[0], selected: p.message_preview === o[0] }, o[1]); }))),
        ], "Save", function (v) {
          var edit = { display_name: v.display_name, bio: v.bio };
          if (v.message_preview) edit.message_preview = v.message_preview;
          return api("POST", "profile", edit).then(function () {
            profileView(user);
          });
        }));
    }, fail);
  }

  // --- friends -----------------------------------------------------------
  function friendAction(action, user) {
    return api("POST", "friends", { action: action, user: user }).then(function (data) {
      renderFriends(data);
    }, fail);
  }
  function renderFriends(data) {
    var friends = data.friends || [], incoming = data.incoming || [], outgoing = data.outgoing || [];
    show(
      h("h1", "Friends"),
      form("row.card", [h("input.grow", { name: "user", placeholder: "user name", required: true })],
        "Send friend request", function (v) { return friendAction("request", v.user.trim()); }),
      h("h2", "Requests for you"),
      incoming.length ? incoming.map(function (n) {
        return h("div.card.row", h("span.grow", n),
          h("button.primary", { type: "button", onclick: function () { friendAction("accept", n); } }, "Accept"),
          h("button", { type: "button", onclick: function () { friendAction("decline", n); } }, "Decline"));
      }) : h("p.empty", "none"),
      h("h2", "Your friends"),
      friends.length ? friends.map(function (f) {
        return h("div.card.row",
          h("a.grow", { href: "#/profile/" + encodeURIComponent(f.name) }, f.display_name || f.name),
          h("span.meta", "since " + when(f.since)),
          h("button.danger", { type: "button", onclick: function () { friendAction("remove", f.name); } }, "Remove"));
      }) : h("p.empty", "no friends yet"),
      h("h2", "Waiting for an answer"),
      outgoing.length ? outgoing.map(function (n) { return h("div.card", n); }) : h("p.empty", "none"));
  }
  function friendsView() {
    api("GET", "friends").then(renderFriends, fail);
  }

  // --- posts -------------------------------------------------------------
  function postCard(p) {
    var holder = h("div");
    var count = h("button.link", { type: "button", onclick: function () { openComments(p.id, holder); } },
      (p.comments || 0) + " comments");
    return h("div.card",
      h("div.meta", h("a", { href: "#/profile/" + encodeURIComponent(p.author) }, p.author), " · " + when(p.created_at)),
      h("p.body", p.body),
      count, holder);
  }
  function openComments(id, holder) {
    api("GET", "posts/" + id).then(function (data) {
      var post = data.post || {};
      holder.textContent = "";
      add(holder, (post.comment_list || []).map(function (c) {
        return h("div.comment", h("div.meta", c.author + " · " + when(c.created_at)), h("div.body", c.body));
      }));
      add(holder, form("row.comment", [h("input.grow", { name: "body", placeholder: "write a comment", required: true })],
        "Comment", function (v) {
          return api("POST", "posts/" + id + "/comments", { body: v.body }).then(function () { openComments(id, holder); });
        }));
    }, fail);
  }
  function postsView() {
    var list = h("div");
    var more = h("button", { type: "button", hidden: true }, "Older posts");
    var next = null;
    function load() {
      api("GET", "posts?limit=20" + (next ? "&before=" + next : "")).then(function (data) {
        add(list, (data.posts || []).map(postCard));
        if (!list.children.length) add(list, h("p.empty", "no posts yet: write the first"));
        next = data.next;
        more.hidden = next == null;
      }, fail);
    }
    more.addEventListener("click", load);
    show(h("h1", "Posts"),
      form("stack.card", [h("textarea", { name: "body", placeholder: "what's new?", required: true })], "Post",
        function (v, fm) {
          return api("POST", "posts", { body: v.body }).then(function () { fm.reset(); postsView(); });
        }),
      list, more);
    load();
  }

  // --- mailbox -----------------------------------------------------------
  function mailboxView(filter) {
    Piggyback.clearNew();
    var list = h("div");
    var more = h("button", { type: "button", hidden: true }, "Older messages");
    var next = null;
    function load() {
      var q = "messages?limit=30" + (filter === "unread" ? "&state=unread" : "") + (next ? "&before=" + next : "");
      api("GET", q).then(function (data) {
        add(list, (data.messages || []).map(function (m) {
          var unread = m.state === "new" || m.state === "delivered";
          return h("div.card.mail" + (unread ? ".unread" : ""), { onclick: function () { location.hash = "#/mailbox/" + m.id; } },
            h("span.from", m.from), h("span.subject", m.subject, h("span.meta", " — " + (m.snippet || ""))),
            h("span.meta", when(m.sent_at)), h("span.state", unread ? "unread" : m.state));
        }));
        if (!list.children.length) add(list, h("p.empty", "no messages"));
        next = data.next;
        more.hidden = next == null;
      }, fail);
    }
    more.addEventListener("click", load);
    show(h("div.row", h("h1.grow", "Mailbox"),
        h("a", { href: filter === "unread" ? "#/mailbox" : "#/mailbox/unread" }, filter === "unread" ? "show all" : "unread only"),
        h("button", { type: "button", onclick: function () { api("POST", "messages/read-all", {}).then(function () { mailboxView(filter); }, fail); } }, "Mark all read")),
      list, more,
      h("h2", "Write a message"),
      form("stack.card", [
        h("input", { name: "to", placeholder: "to (user name)", required: true }),
        h("input", { name: "subject", placeholder: "subject", required: true }),
        h("textarea", { name: "body", placeholder: "message", required: true }),
      ], "Send", function (v, fm) {
        return api("POST", "messages", { to: v.to.trim(), subject: v.subject, body: v.body, idempotency_key: uuid() })
          .then(function () { fm.reset(); add(fm, h("div.meta", "sent")); });
      }));
    load();
  }
  function messageView(id) {
    api("GET", "messages/" + id).then(function (data) {
      var m = data.message || {};
      var unread = m.state === "new" || m.state === "delivered";
      show(h("p", h("a", { href: "#/mailbox" }, "← mailbox")),
        h("div.card",
          h("h1", m.subject),
          h("div.meta", "from " + m.from + " to " + m.to + " · " + when(m.sent_at) + " · ", h("span.state", unread ? "read" : m.state)),
          h("p.body", m.body),
          h("div.row",
            h("button", { type: "button", onclick: function () { location.hash = "#/mailbox"; } }, "Back"),
            h("button.danger", { type: "button", onclick: function () {
              api("DELETE", "messages/" + id).then(function () { location.hash = "#/mailbox"; }, fail);
            } }, "Delete"))));
      Piggyback.dismiss(m.id);
      // Reading it is what marks it read (a GET changes nothing).
      if (unread) api("POST", "messages/" + id + "/read", {}).catch(function () {});
    }, fail);
  }

  // --- routing -----------------------------------------------------------
  function route() {
    var parts = (location.hash.replace(/^#\/?/, "") || "posts").split("/").map(decodeURIComponent);
    Array.prototype.forEach.call(document.querySelectorAll("nav a"), function (a) {
      a.classList.toggle("active", a.getAttribute("href") === "#/" + parts[0]);
    });
    if (!me && parts[0] !== "login") { location.hash = "#/login"; return; }
    switch (parts[0]) {
      case "login": return loginView();
      case "profile": return profileView(parts[1]);
      case "friends": return friendsView();
      case "mailbox":
        if (parts[1] && /^\d+$/.test(parts[1])) return messageView(parts[1]);
        return mailboxView(parts[1]);
      default: return postsView();
    }
  }

  Piggyback.onOpen(function (id) { location.hash = id ? "#/mailbox/" + id : "#/mailbox"; });
  document.getElementById("logout").addEventListener("click", function () {
    api("POST", "session/logout", {}).catch(function () {}).then(function () {
      Piggyback.reset();
      setUser(null);
      location.hash = "#/login";
    });
  });
  window.addEventListener("hashchange", route);

  // Who is signed in? (a cookie from an earlier visit, or REMOTE_USER when
  // the web server authenticates): the caller's own profile names them.
  api("GET", "profile").then(function (data) {
    setUser(nameOf(data));
  }, function () {
    setUser(null);
  }).then(route);
})();
