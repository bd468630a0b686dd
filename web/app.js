// app.js: the demo site's views (sign-in, profile, friends, posts, mailbox), in
// English and Chinese. Its requests go through Piggyback.api (piggyback.js), but
// piggyback.js would see them just as well through plain fetch(): it observes
// every answer of the site. Routing is by location.hash.
//
// A request that fails never replaces what is on screen: the error is shown in
// place (#notice for loading a view, under the form for a form) with a button
// that tries again.
(function () {
  "use strict";
  var api = Piggyback.api;
  var view = document.getElementById("view");
  var notice = document.getElementById("notice");
  var me = null;

  // ---- words ----------------------------------------------------------------
  var WORDS = {
    en: {
      title: "Piggyback",
      nav_posts: "Posts", nav_friends: "Friends", nav_profile: "Profile", nav_mailbox: "Mailbox",
      counters_label: "Your messages",
      signed_in_as: "signed in as {name}", log_out: "Log out", language: "Language",
      sign_in: "Sign in", user_name: "user name", password: "password",
      sign_in_help: "Use the name and password your site gave you.",
      retry: "Try again", dismiss: "Dismiss",
      error_network: "The answer did not arrive (the connection was cut or the server is unreachable).",
      error_status: "The server refused ({status}): {message}",
      error_load: "Could not load this page.",
      joined: "joined {date}", no_bio: "no bio yet", counts: "{friends} friends · {posts} posts",
      edit: "Edit", display_name: "display name", about_you: "about you", save: "Save", saved: "saved",
      notes_show: "Message notes show: ",
      preview_full: "sender, subject and text", preview_subject: "sender and subject", preview_sender: "sender only",
      friends: "Friends", send_request: "Send friend request", requests_for_you: "Requests for you",
      accept: "Accept", decline: "Decline", your_friends: "Your friends", since: "since {date}",
      remove: "Remove", no_friends: "no friends yet", waiting: "Waiting for an answer", none: "none",
      posts: "Posts", whats_new: "what's new?", post: "Post", older_posts: "Older posts",
      no_posts: "no posts yet: write the first", comments: "{n} comments", write_comment: "write a comment",
      comment: "Comment",
      mailbox: "Mailbox", show_all: "show all", unread_only: "unread only", mark_all_read: "Mark all read",
      older_messages: "Older messages", no_messages: "no messages", write_message: "Write a message",
      to: "to (user name)", subject: "subject", message: "message", send: "Send", sent: "sent",
      back_to_mailbox: "← mailbox", from_to: "from {from} to {to} · {date}", back: "Back", delete: "Delete",
      state_new: "unread", state_delivered: "unread", state_read: "read", state_deleted: "deleted",
    },
    zh: {
      title: "Piggyback",
      nav_posts: "动态", nav_friends: "好友", nav_profile: "个人资料", nav_mailbox: "站内信",
      counters_label: "你的消息",
      signed_in_as: "已登录：{name}", log_out: "退出", language: "语言",
      sign_in: "登录", user_name: "用户名", password: "密码",
      sign_in_help: "请使用网站给你的用户名和密码。",
      retry: "重试", dismiss: "关闭",
      error_network: "没有收到回应（连接中断或服务器无法访问）。",
      error_status: "服务器拒绝了请求（{status}）：{message}",
      error_load: "无法加载此页。",
      joined: "{date} 加入", no_bio: "还没有简介", counts: "{friends} 位好友 · {posts} 条动态",
      edit: "编辑", display_name: "显示名称", about_you: "关于你", save: "保存", saved: "已保存",
      notes_show: "消息告示贴显示：",
      preview_full: "发件人、主题和内容", preview_subject: "发件人和主题", preview_sender: "只显示发件人",
      friends: "好友", send_request: "发送好友请求", requests_for_you: "给你的好友请求",
      accept: "接受", decline: "拒绝", your_friends: "你的好友", since: "{date} 起",
      remove: "删除好友", no_friends: "还没有好友", waiting: "等待对方回应", none: "无",
      posts: "动态", whats_new: "有什么新鲜事？", post: "发布", older_posts: "更早的动态",
      no_posts: "还没有动态：来写第一条吧", comments: "{n} 条评论", write_comment: "写评论",
      comment: "评论",
      mailbox: "站内信", show_all: "显示全部", unread_only: "只看未读", mark_all_read: "全部标为已读",
      older_messages: "更早的消息", no_messages: "没有消息", write_message: "写消息",
      to: "收件人（用户名）", subject: "主题", message: "内容", send: "发送", sent: "已发送",
      back_to_mailbox: "← 站内信", from_to: "{from} 发给 {to} · {date}", back: "返回", delete: "删除",
      state_new: "未读", state_delivered: "未读", state_read: "已读", state_deleted: "已删除",
    },
  };
  function t(key, args) {
    var lang = Piggyback.lang();
    var s = (WORDS[lang] && WORDS[lang][key]) || WORDS.en[key] || key;
    return s.replace(/\{(\w+)\}/g, function (_, k) { return args && args[k] != null ? String(args[k]) : ""; });
  }

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
    clearNotice();
    view.textContent = "";
    for (var i = 0; i < arguments.length; i++) add(view, arguments[i]);
  }
  function when(ts) {
    if (!ts) return "";
    var d = new Date(ts);
    return isNaN(d) ? String(ts) : d.toLocaleString(Piggyback.lang() === "zh" ? "zh-CN" : "en");
  }
  function errorText(err) {
    if (err && err.status === 0) return t("error_network");
    if (err && err.status) return t("error_status", { status: err.status, message: err.message });
    return String((err && err.message) || err);
  }
  // An inline error with a button that runs `retry` again.
  function errorBox(err, retry) {
    var box = h("div.error", { role: "alert" }, h("span.grow", errorText(err)));
    if (retry) {
      add(box, h("button", { type: "button", "data-retry": true, onclick: function () { box.remove(); retry(); } },
        t("retry")));
    }
    return box;
  }
  function clearNotice() { notice.textContent = ""; }
  // A view's request failed: what is on screen stays, the error goes above it.
  function fail(retry) {
    return function (err) {
      if (err && err.status === 401) { setUser(null); location.hash = "#/login"; return; }
      clearNotice();
      notice.appendChild(errorBox(err, retry));
    };
  }
  function formValues(form) {
    var out = {};
    Array.prototype.forEach.call(form.elements, function (f) { if (f.name) out[f.name] = f.value; });
    return out;
  }
  // A form whose submit calls f(values) and shows its error in place, with a retry.
  function form(cls, fields, label, f) {
    var err = h("div");
    var btn = h("button.primary", { type: "submit" }, label);
    var fm = h("form." + cls, {
      onsubmit: function (ev) {
        ev.preventDefault();
        submit();
      },
    }, fields, err, h("div", btn));
    function submit() {
      err.textContent = "";
      btn.disabled = true;
      Promise.resolve(f(formValues(fm), fm)).catch(function (e) {
        if (e && e.status === 401 && me) return fail(null)(e);
        err.appendChild(errorBox(e, submit));
      }).then(function () { btn.disabled = false; });
    }
    return fm;
  }
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  // ---- the frame: words, who is signed in, language switch --------------------
  function frame() {
    document.documentElement.lang = Piggyback.lang() === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    Array.prototype.forEach.call(document.querySelectorAll("[data-i18n]"), function (e) {
      e.textContent = t(e.getAttribute("data-i18n"));
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-i18n-label]"), function (e) {
      e.setAttribute("aria-label", t(e.getAttribute("data-i18n-label")));
    });
    document.getElementById("who").textContent = me ? t("signed_in_as", { name: me }) : "";
    document.getElementById("lang").value = Piggyback.lang();
  }
  function setUser(name) {
    me = name || null;
    Piggyback.setUser(me);
    document.getElementById("nav").hidden = !me;
    document.getElementById("counters").hidden = !me;
    document.getElementById("logout").hidden = !me;
    frame();
  }

  // ---- sign-in ------------------------------------------------------------------
  function loginView() {
    show(h("div.login.card",
      h("h1", t("sign_in")),
      h("p.meta", t("sign_in_help")),
      form("stack.sign-in", [
        h("input", { name: "name", placeholder: t("user_name"), "aria-label": t("user_name"), autocomplete: "username", required: true }),
        h("input", { name: "password", type: "password", placeholder: t("password"), "aria-label": t("password"), autocomplete: "current-password", required: true }),
      ], t("sign_in"), function (v) {
        Piggyback.reset();
        return api("POST", "session", { name: v.name, password: v.password }).then(function (data) {
          setUser((data.session && data.session.name) || v.name);
          location.hash = "#/posts";
        });
      })));
  }

  // ---- profile ------------------------------------------------------------------
  function profileView(user) {
    var load = function () {
      api("GET", "profile" + (user ? "?user=" + encodeURIComponent(user) : "")).then(function (data) {
        var p = data.profile || {};
        var mine = !user || user === me;
        show(
          h("h1", p.display_name || p.name),
          h("div.card",
            h("div.meta", "@" + p.name + " · " + t("joined", { date: when(p.joined_at) })),
            h("p.body", p.bio || h("span.empty", t("no_bio"))),
            h("div.meta", t("counts", { friends: p.friends || 0, posts: p.posts || 0 }))),
          mine && h("h2", t("edit")),
          mine && form("stack.card", [
            h("input", { name: "display_name", value: p.display_name || "", placeholder: t("display_name"), "aria-label": t("display_name") }),
            h("textarea", { name: "bio", placeholder: t("about_you"), "aria-label": t("about_you") }, p.bio || ""),
            p.message_preview && h("label.meta", t("notes_show"),
              h("select", { name: "message_preview" },
                ["full", "subject", "sender"].map(function (o) {
                  return h("option", { value: o, selected: p.message_preview === o }, t("preview_" + o));
                }))),
          ], t("save"), function (v) {
            var edit = { display_name: v.display_name, bio: v.bio };
            if (v.message_preview) edit.message_preview = v.message_preview;
            return api("POST", "profile", edit).then(function () { profileView(user); });
          }));
      }, fail(load));
    };
    load();
  }

  // ---- friends ------------------------------------------------------------------
  function friendAction(action, user) {
    var go = function () {
      return api("POST", "friends", { action: action, user: user }).then(renderFriends, fail(go));
    };
    return go();
  }
  function renderFriends(data) {
    var friends = data.friends || [], incoming = data.incoming || [], outgoing = data.outgoing || [];
    show(
      h("h1", t("friends")),
      form("row.card", [h("input.grow", { name: "user", placeholder: t("user_name"), "aria-label": t("user_name"), required: true })],
        t("send_request"), function (v) {
          return api("POST", "friends", { action: "request", user: v.user.trim() }).then(renderFriends);
        }),
      h("h2", t("requests_for_you")),
      incoming.length ? incoming.map(function (n) {
        return h("div.card.row", h("span.grow", n),
          h("button.primary", { type: "button", onclick: function () { friendAction("accept", n); } }, t("accept")),
          h("button", { type: "button", onclick: function () { friendAction("decline", n); } }, t("decline")));
      }) : h("p.empty", t("none")),
      h("h2", t("your_friends")),
      friends.length ? friends.map(function (f) {
        return h("div.card.row",
          h("a.grow", { href: "#/profile/" + encodeURIComponent(f.name) }, f.display_name || f.name),
          h("span.meta", t("since", { date: when(f.since) })),
          h("button.danger", { type: "button", onclick: function () { friendAction("remove", f.name); } }, t("remove")));
      }) : h("p.empty", t("no_friends")),
      h("h2", t("waiting")),
      outgoing.length ? outgoing.map(function (n) { return h("div.card", n); }) : h("p.empty", t("none")));
  }
  function friendsView() {
    var load = function () { api("GET", "friends").then(renderFriends, fail(load)); };
    load();
  }

  // ---- posts --------------------------------------------------------------------
  function postCard(p) {
    var holder = h("div");
    var count = h("button.link", { type: "button", onclick: function () { openComments(p.id, holder); } },
      t("comments", { n: p.comments || 0 }));
    return h("div.card",
      h("div.meta", h("a", { href: "#/profile/" + encodeURIComponent(p.author) }, p.author), " · " + when(p.created_at)),
      h("p.body", p.body),
      count, holder);
  }
  function openComments(id, holder) {
    var load = function () {
      api("GET", "posts/" + id).then(function (data) {
        var post = data.post || {};
        holder.textContent = "";
        add(holder, (post.comment_list || []).map(function (c) {
          return h("div.comment", h("div.meta", c.author + " · " + when(c.created_at)), h("div.body", c.body));
        }));
        add(holder, form("row.comment", [h("input.grow", { name: "body", placeholder: t("write_comment"), "aria-label": t("write_comment"), required: true })],
          t("comment"), function (v) {
            return api("POST", "posts/" + id + "/comments", { body: v.body }).then(function () { openComments(id, holder); });
          }));
      }, function (err) {
        holder.textContent = "";
        if (err && err.status === 401) return fail(null)(err);
        holder.appendChild(errorBox(err, load));
      });
    };
    load();
  }
  function postsView() {
    var list = h("div");
    var more = h("button", { type: "button", hidden: true }, t("older_posts"));
    var next = null;
    var shown = false;
    function page() {
      api("GET", "posts?limit=20" + (next ? "&before=" + next : "")).then(function (data) {
        if (!shown) {
          shown = true;
          show(h("h1", t("posts")),
            form("stack.card", [h("textarea", { name: "body", placeholder: t("whats_new"), "aria-label": t("whats_new"), required: true })], t("post"),
              function (v, fm) {
                return api("POST", "posts", { body: v.body }).then(function () { fm.reset(); postsView(); });
              }),
            list, more);
        }
        clearNotice();
        add(list, (data.posts || []).map(postCard));
        if (!list.children.length) add(list, h("p.empty", t("no_posts")));
        next = data.next;
        more.hidden = next == null;
      }, fail(page));
    }
    more.addEventListener("click", page);
    page();
  }

  // ---- mailbox ------------------------------------------------------------------
  // A notice the server wrote (friend request, comment) is worded in the
  // reader's language from its kind; a person's message keeps its subject.
  function subjectOf(m) {
    if (m.kind && m.kind !== "note" && Piggyback.words.en["subject_" + m.kind]) {
      return Piggyback.t("subject_" + m.kind, { from: m.from });
    }
    return m.subject;
  }
  // A friend notice's text is the server's; worded here too. A comment notice's
  // text is the comment itself.
  function bodyOf(m) {
    if (m.kind && Piggyback.words.en["body_" + m.kind]) return Piggyback.t("body_" + m.kind, { from: m.from });
    return m.body;
  }
  function mailboxView(filter) {
    var list = h("div");
    var more = h("button", { type: "button", hidden: true }, t("older_messages"));
    var next = null;
    var shown = false;
    function page() {
      var q = "messages?limit=30" + (filter === "unread" ? "&state=unread" : "") + (next ? "&before=" + next : "");
      api("GET", q).then(function (data) {
        if (!shown) {
          shown = true;
          show(h("div.row", h("h1.grow", t("mailbox")),
              h("a", { href: filter === "unread" ? "#/mailbox" : "#/mailbox/unread" }, filter === "unread" ? t("show_all") : t("unread_only")),
              h("button", { type: "button", onclick: markAll }, t("mark_all_read"))),
            list, more,
            h("h2", t("write_message")),
            form("stack.card.compose", [
              h("input", { name: "to", placeholder: t("to"), "aria-label": t("to"), required: true }),
              h("input", { name: "subject", placeholder: t("subject"), "aria-label": t("subject"), required: true }),
              h("textarea", { name: "body", placeholder: t("message"), "aria-label": t("message"), required: true }),
            ], t("send"), function (v, fm) {
              return api("POST", "messages", { to: v.to.trim(), subject: v.subject, body: v.body, idempotency_key: uuid() })
                .then(function () { fm.reset(); add(fm, h("div.meta", t("sent"))); });
            }));
        }
        clearNotice();
        add(list, (data.messages || []).map(function (m) {
          var unread = m.state === "new" || m.state === "delivered";
          return h("a.card.mail" + (unread ? ".unread" : ""), { href: "#/mailbox/" + m.id },
            h("span.from", m.from), h("span.subject", subjectOf(m), m.kind === "friend_request" || m.kind === "friend_accept" ? null : h("span.meta", " — " + (m.snippet || ""))),
            h("span.meta", when(m.sent_at)), h("span.state", t("state_" + m.state)));
        }));
        if (!list.children.length) add(list, h("p.empty", t("no_messages")));
        next = data.next;
        more.hidden = next == null;
      }, fail(page));
    }
    function markAll() {
      api("POST", "messages/read-all", {}).then(function () { mailboxView(filter); }, fail(markAll));
    }
    more.addEventListener("click", page);
    page();
  }
  function messageView(id) {
    var load = function () {
      api("GET", "messages/" + id).then(function (data) {
        var m = data.message || {};
        var unread = m.state === "new" || m.state === "delivered";
        var del = function () { api("DELETE", "messages/" + id).then(function () { location.hash = "#/mailbox"; }, fail(del)); };
        show(h("p", h("a", { href: "#/mailbox" }, t("back_to_mailbox"))),
          h("div.card",
            h("h1", subjectOf(m)),
            h("div.meta", t("from_to", { from: m.from, to: m.to, date: when(m.sent_at) }) + " · ",
              h("span.state", t(unread ? "state_read" : "state_" + m.state))),
            h("p.body", bodyOf(m)),
            h("div.row",
              h("button", { type: "button", onclick: function () { location.hash = "#/mailbox"; } }, t("back")),
              h("button.danger", { type: "button", onclick: del }, t("delete")))));
        Piggyback.dismiss(m.id);
        // Reading it is what marks it read (a GET changes nothing).
        if (unread) api("POST", "messages/" + id + "/read", {}).catch(function () {});
      }, fail(load));
    };
    load();
  }

  // ---- routing ------------------------------------------------------------------
  function route() {
    var parts = (location.hash.replace(/^#\/?/, "") || "posts").split("/").map(decodeURIComponent);
    Array.prototype.forEach.call(document.querySelectorAll("nav a"), function (a) {
      var on = a.getAttribute("href") === "#/" + parts[0];
      a.classList.toggle("active", on);
      if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
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
  document.getElementById("lang").addEventListener("change", function (ev) { Piggyback.setLang(ev.target.value); });
  document.addEventListener("piggyback:lang", function () { frame(); route(); });
  window.addEventListener("hashchange", route);
  frame();

  // Who is signed in? A cookie from an earlier visit, or REMOTE_USER when the web
  // server authenticates: GET session names them (and never answers 401).
  function start() {
    api("GET", "session").then(function (data) {
      setUser(data.session && data.session.name);
      route();
    }, function (err) {
      setUser(null);
      notice.appendChild(errorBox(err, function () { clearNotice(); start(); }));
    });
  }
  start();
})();
