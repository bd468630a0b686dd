#!/usr/bin/env python3
"""Stress test of Piggyback under load and SIGKILLs, with an invariant checker.

Run by scripts/stress after it has built the release binaries. The suite is installed
and served exactly as tests/e2e/run_e2e.py does it (its Install and Server are imported,
not copied), by real lighttpd on 127.0.0.1 (--mode cgi), as FastCGI (--mode fastcgi), or as CGI on PostgreSQL through
pgbouncer (--mode postgres, a throw-away cluster from scripts/pg-cluster). During the load:

* every user has a clicker: GETs of every program (profile, friends, posts, one post,
  messages, one message, session, the idle check messages/status with If-None-Match)
  and marks read the messages it was shown, always
  with its cookie and `X-Piggyback-Ack: shown=...` naming the batches it has shown;
* senders act as random users: notes (each with a unique subject), friend requests
  (remove, request, accept), posts and comments (each with a unique body);
* a killer SIGKILLs random running CGI programs, children of the lighttpd this script
  started, found by their parent pid and executable, never anything else;
* a held-lock phase: once, from 40 % of the run, another process holds the database's
  write lock for HOLD_SECONDS, longer than the programs' busy timeout (SQLite:
  `BEGIN IMMEDIATE`; PostgreSQL, which has no such lock: `LOCK TABLE messages`, which
  holds every insert of a message up);
* a ledger keeps every response (ledger.jsonl in the work directory).

Then `piggyback drain --stale-after 0`, a settle phase (after the acknowledgement lease,
every user asks again until nothing is announced again), and the checks:

1. every send answered 201/202 is stored exactly once, none twice (comments and their
   notices too);
2. no message is in two complete answers unless the later marks it a repeat;
3. every message flipped to delivered was seen in a complete answer (or announced
   again, which the settle phase sees);
4. counters match a recount (`piggyback check`), PRAGMA integrity_check is ok;
5. every 5xx a program wrote is a 503 with Retry-After (the web server's own 5xx for a
   killed program, not JSON, are counted and must not outnumber the kills);
6. the spool's new/, cur/ and bad/ are empty;
7. during the held lock, sends were accepted (202) and none answered 503;
8. the run saw what it checks: sends accepted, and programs killed when kills were
   planned (a run where every send was refused, or nothing was killed, fails).

Only 127.0.0.1 is contacted; the server is stopped by its own pid. Python standard
library only. The last line is "stress: PASS ..." or "stress: FAIL ..."; exit 1 on
failure.
"""

import argparse
import http.client
import json
import os
import random
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import run_e2e  # noqa: E402  (the installs and servers of the e2e suite)

HOLD_SECONDS = 4.0  # the held-lock phase: twice the programs' busy timeout (2 s)
ACK_LEASE = 5  # the smallest lease the programs accept: the settle phase waits it out
SETTINGS = {  # what the stress site's configuration changes from cgi-bin-config/
    # The load is many people's: one user's limits would only turn it into 429s.
    "PIGGYBACK_SEND_RATE": "1000000",
    "PIGGYBACK_SEND_PAIR_DAILY": "1000000",
    "PIGGYBACK_POST_RATE": "1000000",
    "PIGGYBACK_ACK_LEASE": str(ACK_LEASE),
    "PIGGYBACK_MAX_ITEMS": "1000",  # every announced message itemized, so it can be traced
}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# --- the site under test -------------------------------------------------------


class CgiSite:
    """The suite as classic CGI programs under lighttpd (--mode cgi): one process per
    request, each a child of lighttpd."""

    KIND, CONF = "lighttpd", "lighttpd.conf"
    # A killed program fails only its own request: lighttpd answers it with a 500.
    SERVER_5XX_PER_KILL_AT_MOST_ONE = True

    def __init__(self, work):
        self.inst = self.make_install(work)
        conf = self.base_conf()
        for name, value in SETTINGS.items():
            conf, n = re.subn(rf'("{name}"\s*=>\s*)"[^"]*"', rf'\g<1>"{value}"', conf)
            if n == 0:  # a setting the configuration leaves at its default: add it
                conf, n = re.subn(r'("PIGGYBACK_DB"\s*=>[^\n]*\n)', rf'\g<1>"{name}" => "{value}",\n', conf)
            if n != 1:
                raise RuntimeError(f"cgi-bin-config/{self.CONF} sets {name} {n} times, not once")
        self.conf = work / "stress.conf"
        self.conf.write_text(conf)
        self.server = run_e2e.Server(self.KIND, self.inst)
        self.server.cmd[self.server.cmd.index("-f") + 1] = str(self.conf)

    def make_install(self, work):
        return run_e2e.Install(work / "site")

    def base_conf(self):
        return (run_e2e.CONFIGS / self.CONF).read_text()

    def rows(self, sql, types):
        """The rows of `sql` on the database, each column converted by its type."""
        conn = sqlite3.connect(str(self.inst.db))
        try:
            return [tuple(t(v) for t, v in zip(types, row)) for row in conn.execute(sql)]
        finally:
            conn.close()

    def integrity(self):
        """SQLite's own check of the file; None where the engine has no such check."""
        conn = sqlite3.connect(str(self.inst.db))
        try:
            return conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()

    def close(self):
        """After the checks: nothing to stop beyond the server."""

    def begin_holding_writes(self):
        """Holds the database's write lock from another process (BEGIN IMMEDIATE);
        returns the function that lets it go."""
        conn = sqlite3.connect(str(self.inst.db), isolation_level=None, timeout=60)
        conn.execute("BEGIN IMMEDIATE")

        def release():
            conn.execute("ROLLBACK")
            conn.close()

        return release

    def start(self):
        self.server.start()
        self.port = self.server.port
        self.server_pid = self.server.proc.pid
        self.cgi_dir = str(self.inst.root / "cgi-bin") + "/"

    def running_programs(self):
        """Pids of the CGI programs the server started and that still run: its direct
        children whose executable is one of this install's programs."""
        pids = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid != self.server_pid:
                    continue
                if os.readlink(d / "exe").startswith(self.cgi_dir):
                    pids.append(int(d.name))
            except (OSError, ValueError, IndexError):
                continue
        return pids

    def stop(self):
        self.server.stop()


class FastCgiSite(CgiSite):
    """The suite as FastCGI responders under lighttpd (--mode fastcgi, bin-path): the
    killer's victims are the long-lived backends, which lighttpd starts again."""

    KIND, CONF = "lighttpd-fastcgi", "lighttpd-fastcgi.conf"
    # lighttpd answers 503 itself while it starts a killed backend again (and fails
    # the requests queued on it): many of its own 5xx per kill.
    SERVER_5XX_PER_KILL_AT_MOST_ONE = False


class PostgresSite(CgiSite):
    """The suite as CGI programs under lighttpd on a PostgreSQL database reached
    through a transaction-mode pgbouncer (--mode postgres): a throw-away cluster from
    scripts/pg-cluster in the work directory, the install's spool its own. A killed
    program's transaction is rolled back by the server when its connection drops."""

    def make_install(self, work):
        self.cluster = work / "pg"
        out = subprocess.run([str(REPO / "scripts/pg-cluster"), "start", str(self.cluster)], capture_output=True,
                             text=True, check=True).stdout
        urls = {k: shlex.split(v)[0] for k, v in (line.split("=", 1) for line in out.split())}
        self.direct_url = urls["PIGGYBACK_PG_URL"]
        try:
            inst = run_e2e.PgInstall(work / "site", urls["PIGGYBACK_PGBOUNCER_URL"])
            inst.pb("init")
        except BaseException:
            self.close()
            raise
        return inst

    def base_conf(self):
        return self.inst.lighttpd_conf().read_text()

    def rows(self, sql, types):
        # Straight to the server (not through pgbouncer), with psql: the standard
        # library has no PostgreSQL client. Unit and record separators keep any text.
        p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\x1f", "-R", "\x1e", "-v", "ON_ERROR_STOP=1",
                            "-d", self.direct_url, "-c", sql], capture_output=True, text=True, check=True)
        out = p.stdout.rstrip("\n")
        return [tuple(t(v) for t, v in zip(types, rec.split("\x1f"))) for rec in out.split("\x1e") if rec]

    def begin_holding_writes(self):
        """Holds every insert of a message up from another session (PostgreSQL has no
        database-wide write lock): psql keeps the transaction open until released."""
        p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.direct_url],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        p.stdin.write("BEGIN;\nLOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE;\nSELECT 'locked';\n")
        p.stdin.flush()
        if p.stdout.readline().strip() != "locked":
            raise RuntimeError("psql could not take the lock")

        def release():
            p.stdin.write("ROLLBACK;\n")
            p.stdin.close()
            p.wait(timeout=60)

        return release

    def integrity(self):
        return None  # no file to check: the server's own WAL and the counters' recount cover it

    def close(self):
        subprocess.run([str(REPO / "scripts/pg-cluster"), "stop", str(self.cluster)], capture_output=True)


MODES = {"cgi": CgiSite, "fastcgi": FastCgiSite, "postgres": PostgresSite}


# --- the ledger and the simulated clients ----------------------------------------


class Ledger:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.entries = []
        self.file = open(path, "w")

    def add(self, entry):
        with self.lock:
            self.entries.append(entry)
            self.file.write(json.dumps(entry) + "\n")

    def close(self):
        self.file.close()


class User:
    """One person, whatever tab (thread) acts for them: the batches shown but not yet
    acknowledged, and the messages shown."""

    def __init__(self, name, token, ack_form):
        self.name = name
        self.token = token
        self.ack_form = ack_form
        self.lock = threading.Lock()
        self.unacked = set()
        self.last_shown = 0
        self.etag = None  # of the last messages/status answer
        self.seen = []  # message ids shown, for marking read and opening

    def ack_header(self):
        """The header naming the batches shown and not yet acknowledged; with
        --ack-form upto the first form, the last batch shown ("and all before it"),
        which the checker shows to lose a lost answer's messages."""
        with self.lock:
            if self.ack_form == "upto":
                return str(self.last_shown)
            return "shown=" + ",".join(str(b) for b in sorted(self.unacked)[:64])

    def sent_batches(self, header):
        if header.startswith("shown="):
            return [int(b) for b in header[len("shown="):].split(",") if b]
        return []


class Load:
    def __init__(self, site, users, ledger, rng_seed):
        self.site = site
        self.users = users
        self.ledger = ledger
        self.seed = rng_seed
        self.stop = threading.Event()
        self.counter = 0
        self.counter_lock = threading.Lock()
        self.posts = []  # (post id, author name)
        self.posts_lock = threading.Lock()
        self.kills = 0
        self.held = None  # (start, end) of the held-lock phase, wall-clock seconds

    def next_token(self, prefix):
        with self.counter_lock:
            self.counter += 1
            return f"{prefix}-{self.counter}"

    def call(self, user, method, path, body=None, kind="click", token=None):
        """One request as `user`; records it in the ledger; returns (status, json)."""
        ack = user.ack_header()
        sent_batches = user.sent_batches(ack)
        headers = {"X-Piggyback-Ack": ack}
        poll = path == "/cgi-bin/messages/status"
        if poll and user.etag:
            headers["If-None-Match"] = user.etag
        if method == "POST":
            headers["Origin"] = f"http://127.0.0.1:{self.site.port}"
        entry = {"t": time.time(), "user": user.name, "method": method, "path": path, "kind": kind,
                 "token": token, "ack": ack, "status": None}
        try:
            r = run_e2e.request(self.site.port, method, path, body=body, cookie=user.token, headers=headers,
                                timeout=60)
        except (OSError, http.client.HTTPException) as e:
            entry["error"] = repr(e)
            self.ledger.add(entry)
            return None, None
        entry["status"] = r.status
        entry["t_end"] = time.time()
        entry["retry_after"] = r.header("Retry-After")
        if poll and r.header("ETag"):
            user.etag = r.header("ETag")
        entry["json"] = r.json is not None
        site = r.site_messages
        if r.json is not None and isinstance(r.json, dict):
            entry["error_code"] = (r.json.get("error") or {}).get("code")
            if kind == "send" and r.status in (201, 202):
                entry["sent"] = r.json.get("sent")
        if site is not None:
            entry["site"] = site
            with user.lock:
                # The server took this request's acknowledgement when it answered with
                # site_messages; without the member it may not have.
                user.unacked.difference_update(sent_batches)
                if site.get("batch"):
                    user.unacked.add(site["batch"])
                    user.last_shown = max(user.last_shown, site["batch"])
                user.seen.extend(i["id"] for i in site.get("items", []))
                del user.seen[:-200]
        self.ledger.add(entry)
        return r.status, r.json

    # clickers: every program, with acknowledgements
    def clicker(self, user, rng):
        while not self.stop.is_set():
            with user.lock:
                seen = rng.choice(user.seen) if user.seen else None
            other = rng.choice(self.users).name
            with self.posts_lock:
                post = rng.choice(self.posts)[0] if self.posts else None
            choices = [
                ("GET", "/cgi-bin/profile"),
                ("GET", f"/cgi-bin/profile?user={other}"),
                ("GET", "/cgi-bin/friends"),
                ("GET", "/cgi-bin/posts"),
                ("GET", "/cgi-bin/messages"),
                ("GET", "/cgi-bin/messages?state=unread"),
                ("GET", "/cgi-bin/session"),
                ("GET", "/cgi-bin/messages/status"),
            ]
            if post:
                choices.append(("GET", f"/cgi-bin/posts/{post}"))
            if seen:
                choices += [("GET", f"/cgi-bin/messages/{seen}"), ("POST", f"/cgi-bin/messages/{seen}/read")]
            method, path = rng.choice(choices)
            self.call(user, method, path, body={} if method == "POST" else None)

    # senders: notes, friend requests, posts, comments, as random users
    def sender(self, rng):
        while not self.stop.is_set():
            me, other = rng.sample(self.users, 2)
            what = rng.choices(["note", "friend", "post", "comment"], weights=[6, 2, 1, 3])[0]
            if what == "note":
                token = self.next_token("note")
                self.call(me, "POST", "/cgi-bin/messages",
                          {"to": other.name, "subject": token, "body": "stress " * rng.randint(1, 40)},
                          kind="send", token=token)
            elif what == "friend":
                action = rng.choice(["remove", "request", "accept", "request", "accept"])
                self.call(me, "POST", "/cgi-bin/friends", {"action": action, "user": other.name}, kind="friend")
            elif what == "post":
                token = self.next_token("post")
                status, doc = self.call(me, "POST", "/cgi-bin/posts", {"body": token}, kind="post", token=token)
                if status == 201 and doc and "post" in doc:
                    with self.posts_lock:
                        self.posts.append((doc["post"]["id"], me.name))
            else:
                with self.posts_lock:
                    if not self.posts:
                        continue
                    post, author = rng.choice(self.posts)
                token = self.next_token("comment")
                self.call(me, "POST", f"/cgi-bin/posts/{post}/comments", {"body": token}, kind="comment",
                          token=token + " " + author)

    # the killer: random running programs of our own server, by pid
    def killer(self, rng, per_second):
        if per_second <= 0:
            return
        while not self.stop.wait(rng.expovariate(per_second)):
            pids = self.site.running_programs()
            if not pids:
                continue
            pid = rng.choice(pids)
            try:
                os.kill(pid, signal.SIGKILL)
                self.kills += 1
            except ProcessLookupError:
                pass

    # the held-lock phase: once, past the busy timeout
    def locker(self, at):
        if self.stop.wait(at):
            return
        release = self.site.begin_holding_writes()
        start = time.time()
        try:
            time.sleep(HOLD_SECONDS)
        finally:
            end = time.time()
            release()
            self.held = (start, end)

    def run(self, seconds, senders, kill_rate):
        threads = []
        for i, user in enumerate(self.users):
            threads.append(threading.Thread(target=self.clicker, args=(user, random.Random(self.seed * 1000 + i))))
        for i in range(senders):
            threads.append(threading.Thread(target=self.sender, args=(random.Random(self.seed * 2000 + i),)))
        threads.append(threading.Thread(target=self.killer, args=(random.Random(self.seed), kill_rate)))
        threads.append(threading.Thread(target=self.locker, args=(seconds * 0.4,)))
        for t in threads:
            t.start()
        try:
            self.stop.wait(seconds)
        finally:
            self.stop.set()
            for t in threads:
                t.join()


# --- setup, settle, check ----------------------------------------------------------


def befriend_all(load):
    users = load.users
    for i, a in enumerate(users):
        for b in users[i + 1:]:
            load.call(a, "POST", "/cgi-bin/friends", {"action": "request", "user": b.name}, kind="friend")
            load.call(b, "POST", "/cgi-bin/friends", {"action": "accept", "user": a.name}, kind="friend")


def settle(load):
    """After the load: each user asks again, after the lease, until no answer announces
    anything (new or again); the answers go into the ledger like any other."""
    for _ in range(6):
        time.sleep(ACK_LEASE + 1)
        announced = 0
        for user in load.users:
            for _ in range(3):
                status, doc = load.call(user, "GET", "/cgi-bin/profile", kind="settle")
                site = (doc or {}).get("site_messages") or {}
                if status == 200 and not site.get("batch"):
                    break
                announced += 1
        if announced == 0:
            return True
    return False


class Checker:
    def __init__(self):
        self.failures = []

    def check(self, cond, what):
        if not cond:
            self.failures.append(what)
            print("FAIL:", what, flush=True)


def check_invariants(load, site, ledger, kills, settled, kill_rate):
    c = Checker()
    entries = ledger.entries
    ids = {name: uid for uid, name in site.rows("SELECT id, name FROM users", (int, str))}
    messages = {mid: (subject, body, kind, state, recipient, sender) for mid, subject, body, kind, state, recipient, sender
                in site.rows("SELECT id, subject, body, kind, state, recipient_id, sender_id FROM messages",
                             (int, str, str, str, str, int, int))}
    by_subject = Counter(m[0] for m in messages.values())
    figures = Counter()
    figures["requests"] = len(entries)
    figures["complete answers"] = sum(1 for e in entries if e.get("json"))
    figures["no answer (connection cut)"] = sum(1 for e in entries if e["status"] is None)
    figures["kills"] = kills

    # 1. every accepted send stored exactly once, none twice
    sends = [e for e in entries if e["kind"] == "send"]
    accepted = [e for e in sends if e["status"] in (201, 202) and e.get("json")]
    figures["sends"] = len(sends)
    figures["sends accepted 201"] = sum(1 for e in accepted if e["status"] == 201)
    figures["sends accepted 202"] = sum(1 for e in accepted if e["status"] == 202)
    lost = [e["token"] for e in accepted if by_subject.get(e["token"], 0) != 1]
    twice = [s for s, n in by_subject.items() if s.startswith("note-") and n > 1]
    figures["losses"] = len(lost)
    figures["stored twice"] = len(twice)
    figures["notes stored"] = sum(1 for s in by_subject if s.startswith("note-"))
    c.check(not lost, f"accepted sends not stored exactly once: {lost[:10]}")
    c.check(not twice, f"notes stored twice: {twice[:10]}")
    comments = Counter(b for (b,) in site.rows("SELECT body FROM comments", (str,)))
    notices = Counter(m[1] for m in messages.values() if m[2] == "comment")
    for e in entries:
        if e["kind"] == "comment" and e["status"] == 201 and e.get("json"):
            token, author = e["token"].split(" ")
            figures["comments accepted"] += 1
            c.check(comments.get(token) == 1, f"comment {token} stored {comments.get(token)} times")
            want = 0 if author == e["user"] else 1
            c.check(notices.get(token, 0) == want, f"notice of {token} stored {notices.get(token, 0)} times")
    c.check(all(n == 1 for n in comments.values()), "a comment stored twice")
    c.check(all(n == 1 for n in notices.values()), "a comment notice stored twice")

    # 2. and 3. announcements: once each unless marked a repeat; every flipped message seen
    shown = defaultdict(Counter)  # user id -> message id -> announcements not marked repeat
    seen = defaultdict(set)
    for e in entries:
        site_messages = e.get("site")
        if not site_messages:
            continue
        uid = ids[e["user"]]
        for item in site_messages.get("items", []):
            seen[uid].add(item["id"])
            figures["items announced"] += 1
            if item.get("repeat"):
                figures["items announced again (repeat)"] += 1
            else:
                shown[uid][item["id"]] += 1
    doubles = [(u, m) for u, counter in shown.items() for m, n in counter.items() if n > 1]
    figures["announced twice without repeat"] = len(doubles)
    c.check(not doubles, f"messages announced twice without the repeat mark: {doubles[:10]}")
    flipped = [mid for mid, m in messages.items() if m[3] != "new"]
    unseen = [mid for mid in flipped if mid not in seen[messages[mid][4]]]
    figures["messages"] = len(messages)
    figures["flipped to delivered"] = len(flipped)
    figures["unseen announcements"] = len(unseen)
    figures["still new"] = len(messages) - len(flipped)
    c.check(settled, "the settle phase still had announcements after six rounds")
    c.check(not unseen, f"flipped to delivered but never seen in a complete answer: {unseen[:10]}")
    c.check(figures["still new"] == 0, f"{figures['still new']} messages never announced")

    # 4. counters and integrity
    chk = site.inst.pb("check", check=False)
    c.check(chk.returncode == 0, f"piggyback check: {chk.stdout.strip()} {chk.stderr.strip()}")
    integrity = site.integrity()
    if integrity is None:
        figures["integrity_check"] = "not applicable (PostgreSQL)"
    else:
        c.check(integrity == "ok", f"integrity_check: {integrity}")

    # 5. every 5xx a program wrote is a 503 with Retry-After
    statuses = Counter(e["status"] for e in entries)
    for status, n in sorted(statuses.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        figures[f"status {status}"] = n
    ours = [e for e in entries if e["status"] and e["status"] >= 500 and e.get("json")]
    bad5xx = [e for e in ours if e["status"] != 503 or not e.get("retry_after")]
    c.check(not bad5xx, f"5xx other than 503 with Retry-After: {bad5xx[:5]}")
    servers = [e for e in entries if e["status"] and e["status"] >= 500 and not e.get("json")]
    figures["5xx written by the server for a killed program"] = len(servers)
    if site.SERVER_5XX_PER_KILL_AT_MOST_ONE:
        c.check(len(servers) <= kills, f"{len(servers)} server 5xx but only {kills} kills")

    # 7. the held lock: sends within it accepted (queued), none refused for the lock
    held = load.held
    c.check(held is not None, "the held-lock phase did not run")
    if held is not None:
        within = [e for e in sends if e.get("json") and e.get("t_end") and held[0] <= e["t"] and e["t_end"] <= held[1]]
        figures["sends answered within the held lock"] = len(within)
        figures["sends queued (202) within the held lock"] = sum(1 for e in within if e["status"] == 202)
        c.check(figures["sends queued (202) within the held lock"] > 0,
                f"no send was queued while the lock was held: {Counter(e['status'] for e in within)}")
        refused = [e for e in within if e["status"] == 503]
        c.check(not refused, f"sends answered 503 while the lock was held: {refused[:5]}")

    # 8. the run saw what it checks
    c.check(len(accepted) > 0, f"no send was accepted out of {len(sends)}: nothing was checked")
    c.check(kill_rate <= 0 or kills > 0, f"kills were planned ({kill_rate}/s) but none happened")

    # 6. the spool
    spool = site.inst.root / "data" / "spool"
    for d in ("new", "cur", "bad"):
        left = os.listdir(spool / d) if (spool / d).is_dir() else []
        c.check(not left, f"spool/{d} not empty: {left[:5]}")
    figures["tmp/ files of senders killed before acceptance"] = len(os.listdir(spool / "tmp")) \
        if (spool / "tmp").is_dir() else 0
    return c, figures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=None, help="length of the load (default 60)")
    ap.add_argument("--minutes", type=float, default=None, help="length of the load in minutes")
    ap.add_argument("--users", type=int, default=12)
    ap.add_argument("--senders", type=int, default=None, help="sender threads (default: users / 2)")
    ap.add_argument("--kill-rate", type=float, default=10.0, help="SIGKILLs per second (0: none)")
    ap.add_argument("--mode", choices=sorted(MODES), default="cgi")
    ap.add_argument("--ack-form", choices=["shown", "upto"], default="shown",
                    help="X-Piggyback-Ack as shown=N,M (default) or the first form N")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (ledger, logs, database)")
    args = ap.parse_args()
    seconds = args.minutes * 60 if args.minutes is not None else (args.seconds if args.seconds is not None else 60)
    seed = args.seed if args.seed is not None else int(time.time())
    if args.users < 2:
        ap.error("--users must be at least 2")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    work = Path(tempfile.mkdtemp(prefix="piggyback-stress-"))
    work.chmod(0o755)  # the server's user must reach the install below
    log(f"stress: mode {args.mode}, {seconds:.0f} s, {args.users} users, kill rate {args.kill_rate}/s, "
        f"seed {seed}, work directory {work}")
    site = MODES[args.mode](work)
    ledger = Ledger(work / "ledger.jsonl")
    ok = False
    try:
        names = [f"user{i:02d}" for i in range(args.users)]
        for name in names:
            site.inst.pb("user", "add", name, "--display-name", name.title())
        users = [User(name, site.inst.token(name), args.ack_form) for name in names]
        site.start()
        load = Load(site, users, ledger, seed)
        befriend_all(load)
        t0 = time.monotonic()
        load.run(seconds, args.senders or max(1, args.users // 2), args.kill_rate)
        elapsed = time.monotonic() - t0
        drain = site.inst.pb("drain", "--stale-after", "0", check=False)
        if drain.returncode != 0:
            log(f"stress: final drain failed: {drain.stderr.strip()}")
        settled = settle(load)
        site.stop()
        c, figures = check_invariants(load, site, ledger, load.kills, settled, args.kill_rate)
        c.check(drain.returncode == 0, f"final drain: {drain.stderr.strip()}")
        figures["seconds of load"] = round(elapsed)
        print(json.dumps(dict(figures), indent=1), flush=True)
        (work / "figures.json").write_text(json.dumps(dict(figures), indent=1))
        ok = not c.failures
        verdict = "PASS" if ok else f"FAIL ({len(c.failures)} failed checks)"
        print(f"stress: {verdict}: {figures['requests']} requests, {figures['kills']} kills, "
              f"{figures['sends']} sends ({figures['sends accepted 201'] + figures['sends accepted 202']} accepted), "
              f"{figures['stored twice']} duplicates, {figures['losses']} losses, "
              f"{figures['unseen announcements']} unseen announcements", flush=True)
    finally:
        site.stop()
        site.close()
        ledger.close()
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"stress: kept {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
