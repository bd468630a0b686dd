#!/usr/bin/env python3
"""End-to-end tests of Piggyback under real lighttpd and Apache servers.

Run by scripts/e2e after it has built the release binaries. For each server
(lighttpd + mod_cgi, Apache event + mod_cgid, Apache prefork + mod_cgi) this
installs the suite with scripts/install into its own directory, starts the
server from the project's own config in cgi-bin-config/ on a free loopback
port (as an unprivileged user when run as root), and checks it over HTTP.
A headless Chromium test of web/piggyback.js runs against lighttpd.

Every server is stopped by its own process id at the end, also on failure.
Only 127.0.0.1 is ever contacted. Python standard library only.
The last line printed is "N passed, N failed"; the exit status is 1 on any
failure.
"""

import argparse
import base64
import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "cgi-bin-config"
ALL_PROGRAMS = []  # every CGI program: `piggyback programs`, filled in by server_suite
PROGRAMS = []  # those the install has: filled in by server_suite
IS_ROOT = os.geteuid() == 0
RUN_USER = os.environ.get("PIGGYBACK_USER", "nobody") if IS_ROOT else None
SITE_MESSAGE_KEYS = {"unread", "delivered", "new", "items", "more"}

# The same programs as FastCGI responders (a listening socket on stdin).
FASTCGI_KINDS = {"lighttpd-fastcgi", "apache-fcgid", "nginx-spawn-fcgi"}
DEFAULT_SERVERS = ("lighttpd,apache-event-cgid,apache-prefork-cgi,nginx-fcgiwrap," + ",".join(sorted(FASTCGI_KINDS))
                   + ",busybox-httpd,python-http-server,postgres,site-app-apache,site-app-lighttpd,site-app-nginx")

# The FastCGI kinds send the site's own programs to piggyback-wrap kept running as
# a FastCGI responder; these two start it with spawn-fcgi (lighttpd from bin-path).
WRAPPER_STARTED = {"nginx-spawn-fcgi", "apache-fcgid"}
# Its whole-request deadline, short enough for a test to wait for.
WRAP_DEADLINE = 3
WRAPPER_FCGI_ENV = {"PIGGYBACK_FCGI_REQUEST_DEADLINE": str(WRAP_DEADLINE)}

# Servers that refuse a POST without Content-Length themselves. nginx passes it
# on with no CONTENT_LENGTH: no body (RFC 3875 4.1.2), so the program answers
# 400 empty_body where it needs one.
LENGTH_411 = {"lighttpd", "lighttpd-fastcgi"}

RESULTS = []  # (name, ok, detail)
STARTED = []  # every Server started, for the final stop
VERBOSE = False
KEEP = False  # --keep: leave every database in place


def log(*args):
    print(*args, file=sys.stderr, flush=True)


class Failure(Exception):
    pass


def check(cond, why):
    if not cond:
        raise Failure(why)


def test(name):
    """Run the decorated function now as one test and record its result."""

    def run(f):
        t0 = time.monotonic()
        try:
            f()
        except Failure as e:
            RESULTS.append((name, False, str(e)))
            print(f"FAIL {name}: {e}", flush=True)
        except Exception as e:  # a crash in a test is that test's failure
            RESULTS.append((name, False, repr(e)))
            print(f"FAIL {name}: {e!r}", flush=True)
            if VERBOSE:
                traceback.print_exc()
        else:
            RESULTS.append((name, True, ""))
            print(f"ok   {name} ({time.monotonic() - t0:.1f}s)", flush=True)
        return f

    return run


# --- HTTP ------------------------------------------------------------------


class Resp:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json = json.loads(raw) if raw else None
        except ValueError:
            self.json = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def site_messages(self):
        return self.json.get("site_messages") if isinstance(self.json, dict) else None

    def __repr__(self):
        return f"<{self.status} {self.raw[:200]!r}>"


def request(port, method, path, body=None, cookie=None, headers=None, timeout=30, raw_body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Accept": "application/json"}
    if cookie:
        h["Cookie"] = f"pb_session={cookie}"
    data = raw_body
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    try:
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        raw = r.read()
        return Resp(r.status, r.getheaders(), raw)
    finally:
        conn.close()


def raw_exchange(port, data, timeout=30):
    """Send bytes, read until the server closes; return (head, body) bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    out = b"".join(chunks)
    head, _, body = out.partition(b"\r\n\r\n")
    return head, body


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


# --- installs and servers ----------------------------------------------------


def which(name):
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        p = Path(d) / name
        if p.exists():
            return str(p)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed")
    return found


class Install:
    """A directory laid out by scripts/install, with its own database."""

    def __init__(self, root):
        self.root = Path(root)
        # The data goes to the user the servers run as.
        env = dict(os.environ, PIGGYBACK_USER=RUN_USER) if IS_ROOT else None
        p = subprocess.run([str(REPO / "scripts/install"), "--no-build", str(self.root)],
                           capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"scripts/install {self.root} failed: {p.stderr.strip()}")
        self.db = self.root / "data/piggyback.db"
        self.secret = self.root / "etc/secret"
        self.cli = str(self.root / "bin/piggyback")
        self.passwords = {}
        self.password_errors = {}

    def pb(self, *args, input=None, check=True):
        env = dict(os.environ, PIGGYBACK_SECRET_FILE=str(self.secret))
        p = subprocess.run([self.cli, "--db", str(self.db), *args], input=input, text=True,
                           capture_output=True, env=env, timeout=60)
        if check and p.returncode != 0:
            raise Failure(f"piggyback {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
        return p

    def add_user(self, name):
        password = secrets.token_urlsafe(12)
        p = self.pb("user", "add", name, "--display-name", name.title(), "--password-stdin",
                    input=password + "\n", check=False)
        if p.returncode == 0:
            self.passwords[name] = password
        else:
            self.password_errors[name] = p.stderr.strip()
            self.pb("user", "add", name, "--display-name", name.title())

    def token(self, name):
        return self.pb("token", name, "--ttl", "1h").stdout.strip()

    def send_cmd(self, sender, to):
        return [self.cli, "--db", str(self.db), "send", "--from", sender, "--to", to]


class Server:
    def __init__(self, kind, inst, cgi_timeout=30):
        self.kind = kind
        self.inst = inst
        self.port = free_port()
        self.cgi_timeout = cgi_timeout
        self.proc = None
        self.backends = []  # spawn-fcgi backends (nginx), stopped by pid
        root = inst.root
        self.fcgiwrap = None
        self.wrapper = None  # piggyback-wrap under spawn-fcgi, when the test starts it
        if kind.startswith("lighttpd"):
            self.cmd = [which("lighttpd"), "-D", "-f", str(CONFIGS / f"{kind}.conf")]
            self.cgi_log = root / "log/cgi-stderr.log"
        elif kind == "nginx-spawn-fcgi":
            self.cmd = [which("nginx"), "-c", str(root / "run/nginx.conf")]
            self.cgi_log = root / "log/fcgi-stderr.log"
        elif kind == "nginx-fcgiwrap":
            # Rendered at start (nginx reads no environment); fcgiwrap's stderr,
            # which its programs inherit, is the CGI log.
            self.cmd = [which("nginx"), "-p", str(root), "-e", str(root / "log/nginx-error.log"),
                        "-c", str(root / "run/nginx.conf")]
            self.cgi_log = root / "log/fcgiwrap.log"
        else:
            self.cmd = [which("apache2"), "-f", str(CONFIGS / f"{kind}.conf"), "-DFOREGROUND"]
            self.cgi_log = root / "log/apache-error.log"

    def env(self):
        e = {
            "PIGGYBACK_ROOT": str(self.inst.root),
            "PIGGYBACK_PORT": str(self.port),
            "PIGGYBACK_CGI_TIMEOUT": str(self.cgi_timeout),
        }
        if IS_ROOT:
            e["PIGGYBACK_USER"] = RUN_USER
            e["PIGGYBACK_GROUP"] = subprocess.run(["id", "-gn", RUN_USER], capture_output=True, text=True,
                                                  check=True).stdout.strip()
        else:
            e["PIGGYBACK_USER"] = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
            e["PIGGYBACK_GROUP"] = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
        if self.kind == "lighttpd-fastcgi":
            # lighttpd passes its environment on to the backends it starts.
            e.update(WRAPPER_FCGI_ENV)
        if not self.kind.startswith("lighttpd"):
            # Apache passes its PATH on to the programs; lighttpd gets none at
            # all here, so neither it nor its programs can rely on one.
            e["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            e["LANG"] = "C"
        return e

    def render_nginx(self, *conf_args):
        """The nginx.conf rendered by scripts/nginx-conf (with `conf_args`)."""
        env = dict(self.env(), PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        subprocess.run([str(REPO / "scripts/nginx-conf"), *conf_args], env=env, check=True, capture_output=True)

    def start_fcgiwrap(self):
        """fcgiwrap on a Unix socket, as the server's user."""
        env = dict(self.env(), PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        sock = self.inst.root / "run/fcgiwrap.sock"
        if sock.exists():
            sock.unlink()
        kw = {}
        if IS_ROOT:
            kw = {"user": RUN_USER, "group": env["PIGGYBACK_GROUP"], "extra_groups": []}
        out = open(self.cgi_log, "ab")
        self.fcgiwrap = subprocess.Popen([which("fcgiwrap"), "-c", "4", "-s", f"unix:{sock}"], env=env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=str(self.inst.root), start_new_session=True, **kw)
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline and self.fcgiwrap.poll() is None:
            time.sleep(0.05)
        if not sock.exists():
            raise RuntimeError(f"fcgiwrap did not create {sock}: {self.cgi_log.read_text(errors='replace')[-1000:]}")

    def spawn_fcgi(self, socket_path, program, extra_env=None):
        """`spawn-fcgi -n` (the pid is the program's own) as the server's user."""
        env = self.env()
        err = open(self.cgi_log, "ab")
        cmd = [which("spawn-fcgi"), "-n", "-s", str(socket_path)]
        if IS_ROOT:
            # As root without -u the program would run as root.
            user, group = env["PIGGYBACK_USER"], env["PIGGYBACK_GROUP"]
            cmd += ["-u", user, "-g", group, "-U", user, "-G", group]
        cmd += ["--", str(program)]
        p = subprocess.Popen(cmd, env={"PATH": env["PATH"], **(extra_env or {})}, stdin=subprocess.DEVNULL,
                             stdout=err, stderr=err, cwd=str(self.inst.root), start_new_session=True)
        self.backends.append(p)
        return p

    def start_backends(self):
        """nginx-spawn-fcgi: one `spawn-fcgi -n` per program; the config is
        rendered by render_nginx."""
        for prog in PROGRAMS:
            self.spawn_fcgi(self.inst.root / f"run/fcgi-{prog}.sock", self.inst.root / "cgi-bin" / prog)

    def start_wrapper(self):
        """piggyback-wrap as a FastCGI responder for the site's own programs, as
        nginx-fastcgi.conf and apache-fcgid.conf say to start it (lighttpd starts
        its own from bin-path)."""
        sock = self.inst.root / "run/piggyback-wrap.sock"
        if sock.exists():
            sock.unlink()
        self.wrapper = self.spawn_fcgi(sock, self.inst.root / "bin/piggyback-wrap", WRAPPER_FCGI_ENV)
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline and self.wrapper.poll() is None:
            time.sleep(0.05)
        if not sock.exists():
            raise RuntimeError(f"piggyback-wrap did not listen on {sock}: "
                               f"{self.cgi_log.read_text(errors='replace')[-1000:]}")

    def wrapper_socket(self):
        """The FastCGI wrapper's socket (lighttpd numbers the ones it makes)."""
        found = sorted((self.inst.root / "run").glob("piggyback-wrap.sock*"))
        return found[0] if found else None

    def wrapper_pid(self):
        """The FastCGI wrapper's main process: running bin/piggyback-wrap, its
        parent not (its workers' parent is it)."""
        exe = str(self.inst.root / "bin/piggyback-wrap")

        def runs_wrapper(pid):
            try:
                return os.readlink(f"/proc/{pid}/exe") == exe
            except OSError:
                return False

        for d in Path("/proc").iterdir():
            if d.name.isdigit() and runs_wrapper(d.name):
                try:
                    ppid = (d / "stat").read_text().rsplit(")", 1)[1].split()[1]
                except (OSError, IndexError):
                    continue
                if not runs_wrapper(ppid):
                    return int(d.name)
        return None

    def wait_answer(self, seconds=20):
        """FastCGI: the port is open before the backends are (lighttpd listens
        first): wait for a real answer from a program (JSON, not the server's
        own 502/503/504)."""
        deadline = time.monotonic() + seconds
        last = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                last = request(self.port, "GET", "/cgi-bin/profile", timeout=5)
                if last.status not in (502, 503, 504) and isinstance(last.json, dict):
                    return True
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind}: no answer from /cgi-bin/profile: {last!r}")

    def start(self):
        if self.kind == "nginx-spawn-fcgi":
            self.start_backends()
            self.render_nginx("--fastcgi")
        if self.kind in WRAPPER_STARTED:
            self.start_wrapper()
        if self.kind == "nginx-fcgiwrap":
            self.render_nginx()
            self.start_fcgiwrap()
        out = open(self.inst.root / f"log/{self.kind}-console.log", "ab")
        # A session of its own: Apache's prefork MPM signals its whole process
        # group when it shuts down, which in the foreground would be ours.
        self.proc = subprocess.Popen(self.cmd, env=self.env(), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, cwd=str(self.inst.root), start_new_session=True)
        STARTED.append(self)
        if not wait_port(self.port, self.proc):
            self.stop()
            tail = (self.inst.root / f"log/{self.kind}-console.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.kind} did not start on port {self.port}: {tail}")
        if self.kind in FASTCGI_KINDS:
            self.wait_answer()
        return self

    def stop(self):
        """Stop this server, its fcgiwrap and the backends it did not start, by
        their own pids; True if all are gone."""
        gone = True
        for p in [self.proc, self.fcgiwrap, *self.backends]:
            if p is None or p.poll() is not None:
                continue
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            gone = gone and p.poll() is not None
        if self.fcgiwrap is not None:
            # fcgiwrap -c N leaves its preforked children behind: they are in the
            # session (and process group) started for it, and nothing else is.
            try:
                os.killpg(self.fcgiwrap.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5
            while self.children_left() and time.monotonic() < deadline:
                time.sleep(0.05)
        return gone

    def backends_exit_codes(self):
        return [p.returncode for p in self.backends]

    def children_left(self):
        """Pids of processes of this install still running: the server, its
        children and helpers (they carry PIGGYBACK_ROOT) and the programs."""
        marker = f"PIGGYBACK_ROOT={self.inst.root}\0".encode()
        cgi = str(self.inst.root / "cgi-bin") + "/"
        left = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == os.getpid():
                continue
            try:
                exe = os.readlink(d / "exe")
                env = (d / "environ").read_bytes()
            except OSError:
                continue
            if exe.startswith(cgi) or marker in env:
                left.append(int(d.name))
        return left

    def programs_left(self):
        """Pids of this install's CGI programs still running."""
        cgi = str(self.inst.root / "cgi-bin") + "/"
        left = []
        for pid in self.children_left():
            try:
                if os.readlink(f"/proc/{pid}/exe").startswith(cgi):
                    left.append(pid)
            except OSError:
                pass
        return left


def stop_all():
    for s in STARTED:
        try:
            s.stop()
        except Exception as e:
            log(f"stopping {s.kind} (pid {s.proc.pid if s.proc else '?'}) failed: {e!r}")


# --- the checks ----------------------------------------------------------------


def check_site_messages(resp, what):
    check(resp.json is not None, f"{what}: not JSON: {resp!r}")
    sm = resp.site_messages
    check(isinstance(sm, dict), f"{what}: no site_messages: {resp!r}")
    missing = SITE_MESSAGE_KEYS - set(sm)
    check(not missing, f"{what}: site_messages lacks {sorted(missing)}: {sm}")
    waiting = sm.get("waiting", 0)
    check(sm["unread"] == sm["delivered"] + sm["new"] + waiting, f"{what}: unread != delivered + new + waiting: {sm}")
    check(len(sm["items"]) <= sm["new"], f"{what}: more items than new: {sm}")
    return sm


def post_ok(resp, what, codes=(200, 201, 202)):
    check(resp.status in codes, f"{what}: status {resp.status}: {resp!r}")
    return resp


def send_via_cgi(server, sender_cookie, to, subject, body):
    r = request(server.port, "POST", "/cgi-bin/messages", {
        "to": to, "subject": subject, "body": body, "idempotency_key": secrets.token_hex(8)},
        cookie=sender_cookie)
    post_ok(r, "POST /cgi-bin/messages", (201, 202))
    if r.status == 202:
        # Queued: deliver the spool now, as the queue daemon would.
        server.inst.pb("drain", check=False)
    return r


def server_suite(kind, work):
    label = kind
    inst = Install(work / kind)
    ALL_PROGRAMS[:] = subprocess.run([inst.cli, "programs"], capture_output=True, text=True,
                                     check=True).stdout.split()
    for name, text in SITE_PROGRAMS.items():
        (inst.root / "site" / name).write_text(text)
        (inst.root / "site" / name).chmod(0o755)
    PROGRAMS[:] = [p for p in ALL_PROGRAMS if (inst.root / "cgi-bin" / p).exists()]
    missing = sorted(set(ALL_PROGRAMS) - set(PROGRAMS))
    if missing:
        log(f"    ({kind}: not built, not tested: {', '.join(missing)})")
    for u in ("alice", "bob", "carol"):
        inst.add_user(u)
    server = Server(kind, inst).start()
    port = server.port
    alice, bob = inst.token("alice"), inst.token("bob")

    @test(f"{label}: static client served at /")
    def _():
        r = request(port, "GET", "/")
        check(r.status == 200 and b"piggyback.js" in r.raw, f"GET /: {r!r}")
        r = request(port, "GET", "/piggyback.js")
        check(r.status == 200 and b"site_messages" in r.raw, f"GET /piggyback.js: {r.status}")

    for prog in PROGRAMS:
        @test(f"{label}: GET /cgi-bin/{prog} answers JSON with site_messages")
        def _(prog=prog):
            r = request(port, "GET", f"/cgi-bin/{prog}", cookie=alice)
            check(r.status == 200, f"status {r.status}: {r!r}")
            ctype = r.header("Content-Type") or ""
            check(ctype.startswith("application/json"), f"Content-Type {ctype!r}")
            check("no-store" in (r.header("Cache-Control") or ""), f"Cache-Control {r.header('Cache-Control')!r}")
            check_site_messages(r, prog)

    @test(f"{label}: an error response below 500 carries site_messages")
    def _():
        r = request(port, "GET", "/cgi-bin/messages/987654321", cookie=alice)
        check(r.status == 404, f"status {r.status}: {r!r}")
        check(isinstance(r.json, dict) and "error" in r.json, f"no error member: {r!r}")
        check_site_messages(r, "404")

    @test(f"{label}: no identity gets 401 and no site_messages")
    def _():
        r = request(port, "GET", "/cgi-bin/messages")
        check(r.status == 401, f"status {r.status}: {r!r}")
        check(r.site_messages is None, f"site_messages present: {r!r}")

    @test(f"{label}: a cross-site POST is refused with 403, a same-origin one passes")
    def _():
        r = request(port, "POST", "/cgi-bin/posts", {"body": "from elsewhere"}, cookie=alice,
                    headers={"Origin": "http://evil.example"})
        check(r.status == 403, f"Origin http://evil.example: status {r.status}: {r!r}")
        check(r.json.get("error", {}).get("code") == "cross_site", f"error: {r!r}")
        check_site_messages(r, "403 cross_site")
        r = request(port, "POST", "/cgi-bin/posts", {"body": "from a sibling"}, cookie=alice,
                    headers={"Sec-Fetch-Site": "cross-site"})
        check(r.status == 403, f"Sec-Fetch-Site cross-site: status {r.status}: {r!r}")
        r = request(port, "POST", "/cgi-bin/posts", {"body": "from the site itself"}, cookie=alice,
                    headers={"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"})
        check(r.status == 201, f"same origin: status {r.status}: {r!r}")

    if "session" in PROGRAMS:
        @test(f"{label}: sign in and out through /cgi-bin/session")
        def _():
            check("alice" in inst.passwords,
                  f"alice's password could not be set: {inst.password_errors.get('alice', 'not tried')}")
            r = request(port, "POST", "/cgi-bin/session", {"name": "alice", "password": "wrong password"})
            check(r.status == 401, f"wrong password: status {r.status}: {r!r}")
            r = request(port, "POST", "/cgi-bin/session", {"name": "alice", "password": inst.passwords["alice"]},
                        headers={"Origin": f"http://127.0.0.1:{port}"})
            check(r.status == 200, f"login: status {r.status}: {r!r}")
            set_cookie = r.header("Set-Cookie") or ""
            check(set_cookie.startswith("pb_session=") and "HttpOnly" in set_cookie, f"Set-Cookie {set_cookie!r}")
            check_site_messages(r, "login")
            token = set_cookie.split(";", 1)[0].split("=", 1)[1]
            r = request(port, "GET", "/cgi-bin/session", cookie=token)
            check(r.status == 200 and r.json["session"]["name"] == "alice", f"GET session: {r!r}")
            r = request(port, "POST", "/cgi-bin/session/logout", {}, cookie=token)
            check(r.status == 200 and "Max-Age=0" in (r.header("Set-Cookie") or ""), f"logout: {r!r}")

    @test(f"{label}: friend request and accept through /cgi-bin/friends")
    def _():
        post_ok(request(port, "POST", "/cgi-bin/friends", {"action": "request", "user": "bob"}, cookie=alice), "request")
        r = post_ok(request(port, "POST", "/cgi-bin/friends", {"action": "accept", "user": "alice"}, cookie=bob), "accept")
        names = [f.get("name") for f in r.json.get("friends", [])]
        check("alice" in names, f"bob's friends after accept: {r.json}")

    @test(f"{label}: a message is announced exactly once across 50 concurrent requests")
    def _():
        # Take whatever is already waiting for alice (the friend messages).
        request(port, "GET", "/cgi-bin/profile", cookie=alice)
        subject = f"e2e concurrency {secrets.token_hex(4)}"
        send_via_cgi(server, bob, "alice", subject, "counted exactly once")
        paths = [f"/cgi-bin/{PROGRAMS[i % len(PROGRAMS)]}" for i in range(50)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            resps = list(pool.map(lambda p: request(port, "GET", p, cookie=alice, timeout=60), paths))
        statuses = sorted({r.status for r in resps})
        bad = [r for r in resps if r.status not in (200, 503)]
        check(not bad, f"statuses {statuses}: {bad[:2]}")
        ids, matching, announced = [], [], 0
        for r in resps:
            if r.status != 200:
                continue
            sm = check_site_messages(r, "concurrent")
            announced += sm["new"]
            for it in sm["items"]:
                ids.append(it["id"])
                if it["subject"] == subject:
                    matching.append(it["id"])
        check(len(ids) == len(set(ids)), f"an id was announced twice: {sorted(ids)}")
        check(len(matching) == 1, f"the message was announced {len(matching)} times (statuses {statuses})")
        check(announced == len(ids), f"sum of new {announced} != items {len(ids)}")
        # And it is now delivered, not new.
        r = request(port, "GET", f"/cgi-bin/messages/{matching[0]}", cookie=alice)
        check(r.status == 200 and r.json["message"]["state"] == "delivered", f"state after announce: {r!r}")

    @test(f"{label}: a chunked POST is handled")
    def _():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"body": "posted with Transfer-Encoding: chunked"}).encode()
        conn.request("POST", "/cgi-bin/posts", body=iter([body[:10], body[10:]]),
                     headers={"Content-Type": "application/json", "Cookie": f"pb_session={alice}",
                              "Transfer-Encoding": "chunked"}, encode_chunked=True)
        r = conn.getresponse()
        resp = Resp(r.status, r.getheaders(), r.read())
        conn.close()
        check(resp.status == 201, f"status {resp.status}: {resp!r}")
        check(resp.json["post"]["body"] == "posted with Transfer-Encoding: chunked", f"{resp!r}")
        check_site_messages(resp, "chunked POST")

    @test(f"{label}: a POST without any length " + ("gets 411" if kind in LENGTH_411 else "is refused cleanly"))
    def _():
        head, body = raw_exchange(port, (
            f"POST /cgi-bin/posts HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: pb_session={alice}\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n\r\n").encode())
        status = int(head.split(b" ", 2)[1])
        if kind in LENGTH_411:
            check(status == 411, f"status {status}: {head!r}")
        else:
            # Apache runs the program with no body: it must answer, not crash.
            check(400 <= status < 500, f"status {status}: {head!r} {body[:200]!r}")

    @test(f"{label}: HEAD gets headers and no body")
    def _():
        head, body = raw_exchange(port, (
            f"HEAD /cgi-bin/profile HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: pb_session={alice}\r\n"
            "Connection: close\r\n\r\n").encode())
        check(head.startswith(b"HTTP/1.1 200"), f"head {head!r}")
        check(b"application/json" in head, f"no JSON Content-Type: {head!r}")
        check(body == b"", f"HEAD answered with {len(body)} body bytes: {body[:100]!r}")

    @test(f"{label}: messages/status answers 200 with an ETag, then 304 with no body, then 200 on arrival")
    def _():
        path = "/cgi-bin/messages/status"
        first = request(port, "GET", path, cookie=alice, headers={"X-Piggyback-Ack": "0"})
        check(first.status == 200, f"status {first.status}: {first!r}")
        check_site_messages(first, "messages/status")
        tag, poll = first.header("ETag"), first.header("X-Poll-Interval")
        check(tag and poll == "30", f"ETag {tag!r}, X-Poll-Interval {poll!r}")
        batch = str(first.site_messages.get("batch", 0))
        # Raw, to see exactly what the server sends for a 304.
        head, body = raw_exchange(port, (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: pb_session={alice}\r\n"
            f"If-None-Match: {tag}\r\nX-Piggyback-Ack: {batch}\r\nConnection: close\r\n\r\n").encode())
        check(head.startswith(b"HTTP/1.1 304"), f"head {head!r}")
        check(body == b"", f"a 304 with {len(body)} body bytes: {body[:100]!r}")
        check(f"ETag: {tag}".encode().lower() in head.lower(), f"no ETag on the 304: {head!r}")
        send_via_cgi(server, bob, "alice", "status e2e", "arrives while idle")
        r = request(port, "GET", path, cookie=alice, headers={"If-None-Match": tag, "X-Piggyback-Ack": batch})
        check(r.status == 200, f"after an arrival: status {r.status}")
        sm = check_site_messages(r, "messages/status after an arrival")
        check(sm["new"] == 1 and r.header("ETag") != tag, f"{sm} {r.header('ETag')}")

    @test(f"{label}: a body over 64 KiB gets 413")
    def _():
        big = json.dumps({"body": "x" * (70 * 1024)}).encode()
        try:
            r = request(port, "POST", "/cgi-bin/posts", cookie=alice, raw_body=big,
                        headers={"Content-Type": "application/json"})
            status = r.status
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Failure(f"connection dropped instead of 413: {e!r}")
        check(status == 413, f"status {status}")

    if kind == "lighttpd":
        @test(f"{label}: programs work without PATH (lighttpd started with an empty environment)")
        def _():
            env = Path(f"/proc/{server.proc.pid}/environ").read_bytes()
            check(b"PATH=" not in env.replace(b"PIGGYBACK_", b""), "lighttpd has a PATH")
            r = request(port, "POST", "/cgi-bin/profile", {"bio": "no PATH here"}, cookie=alice)
            check(r.status == 200, f"status {r.status}: {r!r}")
            check(r.json["profile"]["bio"] == "no PATH here", f"{r!r}")

    @test(f"{label}: piggyback check passes after the tests")
    def _():
        p = inst.pb("check", check=False)
        check(p.returncode == 0, f"exit {p.returncode}: {p.stdout.strip()} {p.stderr.strip()}")

    if kind == "lighttpd" and os.environ.get("PIGGYBACK_E2E_NO_BROWSER"):
        # A suite left out is a failure with its reason, never silence.
        @test(f"{label}: browser tests")
        def _():
            raise Failure("skipped: PIGGYBACK_E2E_NO_BROWSER is set")
    elif kind == "lighttpd":
        browser_suite(label, server, inst, work)

    if kind == "lighttpd":
        msqd_suite(server, inst, alice, bob)

    if kind in FASTCGI_KINDS:
        fastcgi_suite(server, inst, alice)
    # Every shipped configuration, FastCGI ones included, wires piggyback-wrap at /app/.
    wrap_suite(server, alice, bob)
    if kind in FASTCGI_KINDS:
        # There it is a FastCGI responder: what only a kept wrapper can get wrong.
        wrap_fastcgi_suite(server, alice, bob)

    stderr_suite(kind, work)
    if kind not in FASTCGI_KINDS and kind != "nginx-fcgiwrap":
        # A FastCGI server's timeout does not kill the program (fcgiwrap's neither):
        # nothing to test.
        timeout_suite(kind, work)
    if kind == "nginx-fcgiwrap":
        # What happens there instead, for the site's wrapped programs.
        nginx_timeout_suite(kind, work)

    @test(f"{label}: server stopped by its own pid")
    def _():
        pid = server.proc.pid
        check(server.stop(), f"pid {pid} still running")
        if server.backends:
            codes = server.backends_exit_codes()
            check(codes == [0] * len(codes), f"spawn-fcgi programs exited with {codes} after SIGTERM")
        # lighttpd signals its FastCGI backends and exits without waiting for them:
        # give them the moment they take to finish and exit.
        deadline = time.monotonic() + 5
        while server.children_left() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = server.children_left()
        check(not left, f"processes left: {left}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            raise Failure(f"port {port} still accepts connections")
        except OSError:
            pass


# The site's own CGI programs, as a site owner would have written them, each
# run through piggyback-wrap (site/ at /app/ in every shipped configuration).
SITE_PROGRAMS = {
    "hello.pl": "#!/usr/bin/perl\nuse strict;\nprint \"Content-Type: application/json\\n\\n\";\n"
                "print '{\"from\":\"perl\"}';\n",
    "hello.php": "<?php\nheader('Content-Type: application/json');\necho json_encode(['from' => 'php']);\n",
    "hello.sh": "#!/bin/sh\nprintf 'Content-Type: application/json\\r\\n\\r\\n{\"from\": \"sh\"}'\n",
    "page.sh": "#!/bin/sh\nprintf 'Content-Type: text/html; charset=utf-8\\n\\n<!doctype html><p>{\"not\": 1}</p>'\n",
    "redirect.sh": "#!/bin/sh\nprintf 'Status: 302 Found\\nLocation: http://127.0.0.1/elsewhere\\n\\n'\n",
    "download.pl": "#!/usr/bin/perl\nbinmode STDOUT;\n"
                   "print \"Content-Type: application/octet-stream\\nContent-Length: 1048576\\n\\n\";\n"
                   "print pack('C*', map { ($_ * 7) % 256 } 0 .. 1023) for 1 .. 1024;\n",
}
DOWNLOAD = bytes((i * 7) % 256 for i in range(1024)) * 1024


def wrap_suite(server, alice, bob):
    """A Perl, a PHP and a shell CGI of the site's own, each wrapped."""
    label, port, inst = server.kind, server.port, server.inst

    def deliver(subject):
        inst.pb("send", "--from", "bob", "--to", "alice", "--subject", subject, "--body", "for a wrapped program")
        inst.pb("drain", check=False)

    for name in ("hello.pl", "hello.php", "hello.sh"):
        @test(f"{label}: the site's own {name}, wrapped, answers with site_messages and announces once")
        def _(name=name):
            subject = f"wrapped {name} {secrets.token_hex(3)}"
            deliver(subject)
            r = request(port, "GET", f"/app/{name}", cookie=alice)
            check(r.status == 200, f"status {r.status}: {r!r}")
            want = {"hello.pl": "perl", "hello.php": "php", "hello.sh": "sh"}[name]
            check(isinstance(r.json, dict) and r.json.get("from") == want, f"the program's own answer: {r!r}")
            sm = check_site_messages(r, name)
            subjects = [it["subject"] for it in sm["items"]]
            check(subject in subjects, f"{subject!r} not announced: {subjects}")
            check("no-store" in (r.header("Cache-Control") or ""), f"Cache-Control {r.header('Cache-Control')!r}")
            check(int(r.header("Content-Length") or len(r.raw)) == len(r.raw), "Content-Length")
            again = request(port, "GET", f"/app/{name}", cookie=alice)
            sm = check_site_messages(again, name + " again")
            check(subject not in [it["subject"] for it in sm["items"]], f"announced twice: {sm}")

    @test(f"{label}: HTML, a redirect and a 1 MB download of the site pass through the wrapper unchanged")
    def _():
        deliver("not for these")
        r = request(port, "GET", "/app/page.sh", cookie=alice)
        check(r.status == 200 and r.raw == b'<!doctype html><p>{"not": 1}</p>', f"page: {r!r}")
        r = request(port, "GET", "/app/redirect.sh", cookie=alice)
        check(r.status == 302 and r.header("Location") == "http://127.0.0.1/elsewhere", f"redirect: {r!r}")
        r = request(port, "GET", "/app/download.pl", cookie=alice)
        check(r.status == 200 and r.raw == DOWNLOAD, f"download: {r.status}, {len(r.raw)} bytes")
        r = request(port, "GET", "/cgi-bin/profile", cookie=alice)
        check(any(it["subject"] == "not for these" for it in check_site_messages(r, "profile")["items"]),
              "the answers that passed through announced nothing")

    @test(f"{label}: REMOTE_USER from an unchecked Authorization header identifies nobody")
    def _():
        basic = {"Authorization": "Basic " + base64.b64encode(b"alice:anything").decode()}
        r = request(port, "GET", "/cgi-bin/messages", headers=basic)
        check(r.status == 401 and r.site_messages is None, f"/cgi-bin/messages: {r!r}")
        r = request(port, "GET", "/app/hello.sh", headers=basic)
        check(r.status == 200 and r.site_messages is None, f"/app/hello.sh: {r!r}")

    @test(f"{label}: scripts/install wrote etc/piggyback-wrap.conf as docs/INTEGRATE.md shows it")
    def _():
        doc = (REPO / "docs/INTEGRATE.md").read_text()
        block = doc.split("<!-- test: wrap-conf -->", 1)[1].split("```", 2)[1].split("\n", 1)[1]
        written = (inst.root / "etc/piggyback-wrap.conf").read_text()
        check(written == block.replace("/srv/piggyback", str(inst.root)), f"{written!r} vs {block!r}")

    wrap_timeout_test(label, port, inst, alice, inst.root / "site", "/app/")

    @test(f"{label}: a direct request of the wrapper runs nothing")
    def _():
        for path in ("/cgi-bin/piggyback-wrap/app/hello.sh", "/cgi-bin/piggyback-wrap/site/hello.sh?/etc/passwd",
                     "/cgi-bin/piggyback-wrap"):
            r = request(port, "GET", path, cookie=alice, headers={"Redirect-Status": "200"})
            check(r.status in (403, 404) and b"from" not in r.raw, f"{path}: {r!r}")

    @test(f"{label}: a direct request whose query is the kernel's #! form runs nothing")
    def _():
        # Apache turns a query without `=` into argv: ?/usr/bin/perl+/…/secret.pl is
        # exactly what the kernel passes for a program whose first line names the wrapper.
        admin = inst.root / "site/admin"
        admin.mkdir(exist_ok=True)
        admin.chmod(0o755)
        secret = admin / "secret.pl"
        secret.write_text(f"#!{inst.root}/bin/piggyback-wrap /usr/bin/perl\n"
                          "print \"Content-Type: application/json\\n\\n\";\nprint '{\"secret\":\"ran\"}';\n")
        secret.chmod(0o755)
        try:
            r = request(port, "GET", f"/cgi-bin/piggyback-wrap?/usr/bin/perl+{secret}", cookie=alice)
            check(r.status in (403, 404) and b"secret" not in r.raw, f"{r!r}")
        finally:
            secret.unlink()


def cgi_wrapper(inst, script, cookie=None):
    """The same program through the CGI wrapper, started as lighttpd's cgi.assign
    starts it (argv [wrapper, script]), as the server's user: (status, JSON or None)."""
    path = inst.root / "site" / script
    env = {"PATH": "/usr/bin:/bin", "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET", "QUERY_STRING": "",
           "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1",
           "SCRIPT_FILENAME": str(path), "SCRIPT_NAME": f"/app/{script}", "REDIRECT_STATUS": "200"}
    if cookie:
        env["HTTP_COOKIE"] = f"pb_session={cookie}"
    kw = {}
    if IS_ROOT:
        group = subprocess.run(["id", "-gn", RUN_USER], capture_output=True, text=True, check=True).stdout.strip()
        kw = {"user": RUN_USER, "group": group, "extra_groups": []}
    p = subprocess.run([str(inst.root / "bin/piggyback-wrap"), str(path)], env=env, cwd=str(path.parent),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60, **kw)
    head, _, body = p.stdout.replace(b"\r\n", b"\n").partition(b"\n\n")
    status = 200
    for line in head.split(b"\n"):
        if line.lower().startswith(b"status:"):
            status = int(line.split()[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def wrap_fastcgi_suite(server, alice, bob):
    """piggyback-wrap kept running as a FastCGI responder (the FastCGI kinds' /app/)."""
    label, port, inst = server.kind, server.port, server.inst
    site = inst.root / "site"

    def deliver(subject, to="alice"):
        sender = "bob" if to == "alice" else "alice"
        inst.pb("send", "--from", sender, "--to", to, "--subject", subject, "--body", "for a wrapped program")
        inst.pb("drain", check=False)

    def announced(json_answer):
        sm = json_answer.get("site_messages") if isinstance(json_answer, dict) else None
        return [it["subject"] for it in sm["items"]] if sm else []

    @test(f"{label}: a FastCGI wrapper and CGI wrappers on one database announce each message once under concurrency")
    def _():
        # Take what earlier tests left, so that only these are counted.
        request(port, "GET", "/app/hello.sh", cookie=alice)
        tag = secrets.token_hex(3)
        subjects = [f"both modes {tag} {i}" for i in range(12)]

        def through_server(_):
            r = request(port, "GET", "/app/hello.sh", cookie=alice)
            check(r.status == 200, f"FastCGI wrapper: {r!r}")
            return announced(r.json)

        def through_cgi(_):
            status, answer = cgi_wrapper(inst, "hello.pl", alice)
            check(status == 200, f"CGI wrapper: {status} {answer!r}")
            return announced(answer)

        with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
            sends = pool.submit(lambda: [deliver(x) for x in subjects])
            asks = [pool.submit(lambda: sum(map(f, range(8)), [])) for f in (through_server, through_cgi) * 2]
            sends.result()
            seen = sum((a.result() for a in asks), [])
        # A send that met a busy database waits in the spool as a file of this test's
        # user (root here): applied by a drain of the same user, as deliver() does, once
        # its claim by a drain that met the busy database has lapsed; then announced.
        deadline = time.monotonic() + 30
        while len([x for x in seen if x.startswith(f"both modes {tag}")]) < len(subjects) \
                and time.monotonic() < deadline:
            inst.pb("drain", check=False)
            seen += announced(request(port, "GET", "/app/hello.sh", cookie=alice).json)
            time.sleep(0.5)
        mine = [x for x in seen if x.startswith(f"both modes {tag}")]
        check(sorted(mine) == sorted(subjects), f"announced {len(mine)} ({len(set(mine))} distinct) of 12: {mine}")

    @test(f"{label}: a kept FastCGI wrapper carries no identity from one request to the next")
    def _():
        deliver(f"only bob's {secrets.token_hex(3)}", to="bob")
        for _ in range(8):
            r = request(port, "GET", "/app/hello.sh", cookie=alice)
            check(r.status == 200 and r.site_messages is not None, f"alice: {r!r}")
            r = request(port, "GET", "/app/hello.sh")
            check(r.status == 200 and r.site_messages is None, f"anonymous after alice: {r!r}")
            r = request(port, "GET", "/app/hello.sh", cookie=bob)
            check(r.status == 200 and r.site_messages is not None, f"bob: {r!r}")
            check(not any(s.startswith("wrapped") or s.startswith("both modes") for s in announced(r.json)),
                  f"bob was told alice's messages: {r!r}")

    @test(f"{label}: each rule refuses the same way through the FastCGI and the CGI wrapper")
    def _():
        outside = inst.root / "outside"
        outside.mkdir(exist_ok=True)
        (outside / "away.sh").write_text(SITE_PROGRAMS["hello.sh"])
        (outside / "away.sh").chmod(0o755)
        link = site / f"link-{secrets.token_hex(3)}.sh"
        link.symlink_to(outside / "away.sh")
        writable = site / f"writable-{secrets.token_hex(3)}.sh"
        writable.write_text(SITE_PROGRAMS["hello.sh"])
        writable.chmod(0o775)
        try:
            for program in (link, writable):
                r = request(port, "GET", f"/app/{program.name}", cookie=alice)
                status, answer = cgi_wrapper(inst, program.name, alice)
                check(r.status == 403 and status == 403, f"{program.name}: FastCGI {r!r}, CGI {status} {answer!r}")
                # Apache (Options without FollowSymLinks) refuses a link itself, before
                # any wrapper: then the refusal is its own page, not the wrapper's.
                if not (program == link and label.startswith("apache")):
                    check(r.json == answer, f"not the same refusal: {r.json} vs {answer}")
        finally:
            link.unlink()
            writable.unlink()

    @test(f"{label}: a client trickling a request to the FastCGI wrapper is cut off at the deadline "
          "while others are served")
    def _():
        sock_path = server.wrapper_socket()
        check(sock_path is not None, "no wrapper socket in run/")
        trickler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        trickler.connect(str(sock_path))
        trickler.settimeout(WRAP_DEADLINE + 30)
        # A BEGIN_REQUEST (responder, no keep-alive), then one byte of PARAMS at a time.
        begin = bytes([1, 1, 0, 1, 0, 8, 0, 0]) + bytes([0, 1, 0, 0, 0, 0, 0, 0])
        trickler.sendall(begin)
        start = time.monotonic()
        params = bytes([1, 4, 0, 1, 0, 64, 0, 0]) + bytes(64)
        closed = False
        for byte in params:
            try:
                trickler.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            r = request(port, "GET", "/app/hello.sh", cookie=alice)
            check(r.status == 200 and r.site_messages is not None, f"another client meanwhile: {r!r}")
            if time.monotonic() - start > WRAP_DEADLINE + 20:
                break
            time.sleep(0.5)
        if not closed:
            try:
                closed = trickler.recv(1) == b""
            except OSError:
                closed = True
        trickler.close()
        check(closed, f"the trickling connection is still open after {time.monotonic() - start:.0f} s")

    @test(f"{label}: SIGTERM to the FastCGI wrapper finishes a slow program's answer, then it exits")
    def _():
        slow = site / f"slow-answer-{secrets.token_hex(3)}.sh"
        slow.write_text("#!/bin/sh\nsleep 2\nprintf 'Content-Type: application/json\\n\\n{\"slow\": true}'\n")
        slow.chmod(0o755)
        try:
            pid = server.wrapper_pid()
            check(pid is not None, "no wrapper process found")
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                answer = pool.submit(request, port, "GET", f"/app/{slow.name}", None, alice)
                time.sleep(1)
                os.kill(pid, signal.SIGTERM)
                r = answer.result()
            check(r.status == 200 and isinstance(r.json, dict) and r.json.get("slow") is True, f"answer: {r!r}")
            check(r.site_messages is not None, f"no site_messages: {r!r}")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() \
                    and b") Z " not in Path(f"/proc/{pid}/stat").read_bytes():
                time.sleep(0.1)
            check(not Path(f"/proc/{pid}").exists() or b") Z " in Path(f"/proc/{pid}/stat").read_bytes(),
                  f"wrapper {pid} still running")
            if server.wrapper is not None:
                check(server.wrapper.wait(timeout=5) == 0, f"exit status {server.wrapper.returncode}")
        finally:
            slow.unlink()


# PIGGYBACK_WRAP_TIMEOUT in the wrapper's timeout tests, seconds: long enough for a
# loaded machine to start the program, short enough to wait for.
WRAP_TIMEOUT = 6


def processes_with(needle):
    """Pids of processes whose command line contains `needle` (bytes)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if needle in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def slow_program(folder, first_line=None):
    """A site program that never answers and starts a process of its own (a shell
    script's `sleep`): (its path, a function listing the pids of both)."""
    tag = f"{secrets.randbelow(10**6):06d}"
    path = folder / f"slow-{tag}.sh"
    # A duration no other process has: how its `sleep` is found again.
    body = f"sleep 90.{tag} >/dev/null 2>&1 &\nwait\n"
    path.write_text((first_line or "#!/bin/sh") + "\n" + body)
    path.chmod(0o755)

    def running():
        return sorted(set(processes_with(path.name.encode()) + processes_with(f"90.{tag}".encode())))

    return path, running


def with_wrap_timeout(inst, seconds):
    """etc/piggyback-wrap.conf with PIGGYBACK_WRAP_TIMEOUT added (the wrapper reads it
    on every request); returns a function that puts the file back."""
    conf = inst.root / "etc/piggyback-wrap.conf"
    original = conf.read_text()
    conf.write_text(original + f"PIGGYBACK_WRAP_TIMEOUT={seconds}\n")
    return lambda: conf.write_text(original)


def wrap_timeout_test(label, port, inst, cookie, folder, url_prefix, first_line=None):
    """A wrapped program that outlives PIGGYBACK_WRAP_TIMEOUT: the wrapper answers 504
    and stops it, with the process it started."""

    @test(f"{label}: a wrapped program past PIGGYBACK_WRAP_TIMEOUT is stopped, with what it started, "
          "and answered 504")
    def _():
        path, running = slow_program(folder, first_line)
        restore = with_wrap_timeout(inst, WRAP_TIMEOUT)
        try:
            r = request(port, "GET", url_prefix + path.name, cookie=cookie, timeout=WRAP_TIMEOUT + 60)
            # Python's http.server has sent 200 already: the wrapper's status is a header there.
            status = int((r.header("Status") or str(r.status)).split()[0])
            check(status == 504, f"status {status}: {r!r}")
            check(isinstance(r.json, dict) and r.json.get("error", {}).get("code") == "timeout",
                  f"not the wrapper's 504: {r!r}")
            deadline = time.monotonic() + 10
            while running() and time.monotonic() < deadline:
                time.sleep(0.1)
            check(not running(), f"still running: {running()}")
        finally:
            restore()
            path.unlink()


def nginx_timeout_suite(kind, work):
    """nginx's own timeout shorter than the wrapper's: nginx answers 504, fcgiwrap
    leaves the program running, and PIGGYBACK_WRAP_TIMEOUT stops it."""
    inst = Install(work / f"{kind}-wrap-timeout")
    inst.add_user("alice")
    alice = inst.token("alice")
    server = Server(kind, inst, cgi_timeout=1).start()
    try:
        @test(f"{kind}: past nginx's timeout the wrapped program runs on (fcgiwrap does not stop it) "
              "until PIGGYBACK_WRAP_TIMEOUT stops it, with what it started")
        def _():
            path, running = slow_program(inst.root / "site")
            restore = with_wrap_timeout(inst, WRAP_TIMEOUT)
            try:
                r = request(server.port, "GET", f"/app/{path.name}", cookie=alice, timeout=60)
                check(r.status == 504 and not (isinstance(r.json, dict) and "error" in r.json),
                      f"not nginx's own 504: {r!r}")
                # Still there after nginx gave up: it had started (or starts now) and runs on.
                deadline = time.monotonic() + WRAP_TIMEOUT - 2
                seen = running()
                while not seen and time.monotonic() < deadline:
                    time.sleep(0.1)
                    seen = running()
                check(seen, "the program was not running after nginx's 504")
                deadline = time.monotonic() + WRAP_TIMEOUT + 10
                while running() and time.monotonic() < deadline:
                    time.sleep(0.1)
                check(not running(), f"still running after PIGGYBACK_WRAP_TIMEOUT: {running()}")
                log_text = server.cgi_log.read_text(errors="replace")
                check(f"{path.name}: stopped after PIGGYBACK_WRAP_TIMEOUT" in log_text,
                      f"no line in {server.cgi_log}: {log_text[-500:]}")
            finally:
                restore()
                path.unlink()
    finally:
        server.stop()


class PlainServer:
    """busybox httpd or Python's http.server --cgi: no configuration file of
    ours, the programs' settings in the server's own environment (both pass it
    on to their CGI programs). The site is served from site/ (the wrapper's
    root), with cgi-bin/ in it."""

    def __init__(self, kind, inst):
        self.kind, self.inst, self.port, self.proc = kind, inst, free_port(), None
        self.cwd = str(inst.root)
        www = inst.root / "site"
        (www / "cgi-bin").mkdir(parents=True, exist_ok=True)
        for prog in PROGRAMS:
            link = www / "cgi-bin" / prog
            if not link.exists():
                link.symlink_to(inst.root / "cgi-bin" / prog)
        if kind == "busybox-httpd":
            conf = inst.root / "etc/busybox-httpd.conf"
            conf.write_text(f"*.pl:{inst.root}/bin/piggyback-wrap\n")
            self.cmd = [which("busybox"), "httpd", "-f", "-p", f"127.0.0.1:{self.port}", "-h", str(www), "-c", str(conf)]
        else:
            # The command docs/INTEGRATE.md shows: `cd FOLDER && python3 -m http.server …`.
            line = integrate_block("python-server").strip().replace("/srv/piggyback", str(inst.root))
            cd, _, command = line.partition(" && ")
            words = shlex.split(command)
            check(cd.startswith("cd ") and words[-1] == "8000", f"INTEGRATE.md's command changed: {line}")
            self.cwd = shlex.split(cd)[1]
            self.cmd = [*words[:-1], str(self.port)]

    def start(self):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PIGGYBACK_ROOT": str(self.inst.root),
               "PIGGYBACK_DB": str(self.inst.db), "PIGGYBACK_SECRET_FILE": str(self.inst.secret),
               "PIGGYBACK_SPOOL": str(self.inst.root / "data/spool")}
        kw = {}
        if IS_ROOT:
            group = subprocess.run(["id", "-gn", RUN_USER], capture_output=True, text=True).stdout.strip()
            kw = {"user": RUN_USER, "group": group, "extra_groups": []}
        out = open(self.inst.root / f"log/{self.kind}.log", "ab")
        self.proc = subprocess.Popen(self.cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     cwd=self.cwd, start_new_session=True, **kw)
        STARTED.append(self)
        if not wait_port(self.port, self.proc):
            raise RuntimeError(f"{self.kind} did not start: {(self.inst.root / f'log/{self.kind}.log').read_text()[-1000:]}")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return True


def integrate_block(marker):
    """The code block after `<!-- test: MARKER -->` in docs/INTEGRATE.md."""
    doc = (REPO / "docs/INTEGRATE.md").read_text()
    return doc.split(f"<!-- test: {marker} -->", 1)[1].split("```", 2)[1].split("\n", 1)[1]


# Python's http.server maps no interpreter: each wrapped program's own first line
# names the wrapper and its interpreter (docs/INTEGRATE.md).
SHEBANG_INTERPRETERS = {".pl": "/usr/bin/perl", ".php": "/usr/bin/php-cgi", ".sh": "/bin/sh"}


def shebang_line(inst, interpreter):
    """docs/INTEGRATE.md's first line for `interpreter`, in this install."""
    line = integrate_block("shebang").strip()
    check(line.endswith(" /usr/bin/perl"), f"INTEGRATE.md's first line changed: {line}")
    return line.replace("/srv/piggyback", str(inst.root))[:-len("/usr/bin/perl")] + interpreter


def python_wrap_suite(server, inst, alice):
    """The site's own programs under Python's http.server --cgi, wrapped by their own
    first line."""
    kind, port = server.kind, server.port
    folder = inst.root / "site/cgi-bin"
    programs = {}
    for name in ("hello.pl", "hello.php", "hello.sh", "page.sh", "download.pl"):
        text = SITE_PROGRAMS[name]
        body = text.split("\n", 1)[1] if text.startswith("#!") else text
        wrapped = f"wrapped-{name}"
        (folder / wrapped).write_text(shebang_line(inst, SHEBANG_INTERPRETERS[Path(name).suffix]) + "\n" + body)
        (folder / wrapped).chmod(0o755)
        programs[name] = wrapped
    args = folder / "wrapped-args.sh"
    args.write_text(shebang_line(inst, "/bin/sh") + "\nprintf 'Content-Type: application/json\\n\\n{\"argc\": %d}' $#\n")
    args.chmod(0o755)

    for name in ("hello.pl", "hello.php", "hello.sh"):
        @test(f"{kind}: the site's own {name}, its first line naming the wrapper, answers with site_messages "
              "and announces once")
        def _(name=name):
            subject = f"wrapped {name} {secrets.token_hex(3)}"
            inst.pb("send", "--from", "bob", "--to", "alice", "--subject", subject, "--body", "for Python")
            inst.pb("drain", check=False)
            r = request(port, "GET", f"/cgi-bin/{programs[name]}", cookie=alice)
            want = {"hello.pl": "perl", "hello.php": "php", "hello.sh": "sh"}[name]
            check(r.status == 200 and isinstance(r.json, dict) and r.json.get("from") == want, f"{r!r}")
            sm = check_site_messages(r, name)
            check(subject in [it["subject"] for it in sm["items"]], f"{subject!r} not announced: {sm}")
            again = check_site_messages(request(port, "GET", f"/cgi-bin/{programs[name]}", cookie=alice), "again")
            check(subject not in [it["subject"] for it in again["items"]], f"announced twice: {again}")

    @test(f"{kind}: query words Python passes as arguments never reach a wrapped program")
    def _():
        for query in ("-s", "foo+bar", ""):
            r = request(port, "GET", f"/cgi-bin/{args.name}?{query}", cookie=alice)
            check(isinstance(r.json, dict) and r.json.get("argc") == 0, f"?{query}: {r!r}")

    @test(f"{kind}: HTML and a 1 MB download pass through the wrapper unchanged")
    def _():
        r = request(port, "GET", f"/cgi-bin/{programs['page.sh']}", cookie=alice)
        check(r.raw == b'<!doctype html><p>{"not": 1}</p>', f"page: {r!r}")
        r = request(port, "GET", f"/cgi-bin/{programs['download.pl']}", cookie=alice)
        check(r.raw == DOWNLOAD, f"download: {r.status}, {len(r.raw)} bytes")

    wrap_timeout_test(kind, port, inst, alice, folder, "/cgi-bin/", shebang_line(inst, "/bin/sh"))


def plain_server_suite(kind, work):
    """What works under busybox httpd and Python's http.server (docs/DEPLOY.md)."""
    inst = Install(work / kind)
    if not ALL_PROGRAMS:  # run without a server suite before it
        ALL_PROGRAMS[:] = subprocess.run([inst.cli, "programs"], capture_output=True, text=True,
                                         check=True).stdout.split()
    PROGRAMS[:] = [p for p in ALL_PROGRAMS if (inst.root / "cgi-bin" / p).exists()]
    for u in ("alice", "bob"):
        inst.add_user(u)
    (inst.root / "site/cgi-bin").mkdir(parents=True, exist_ok=True)
    hello = inst.root / "site/cgi-bin/hello.pl"
    hello.write_text(SITE_PROGRAMS["hello.pl"])
    hello.chmod(0o755)
    server = PlainServer(kind, inst).start()
    port, alice = server.port, inst.token("alice")
    try:
        @test(f"{kind}: the programs answer with site_messages")
        def _():
            r = request(port, "GET", "/cgi-bin/profile", cookie=alice)
            check(r.status == 200, f"status {r.status}: {r!r}")
            check_site_messages(r, "profile")

        @test(f"{kind}: REMOTE_USER from an unchecked Authorization header identifies nobody")
        def _():
            basic = {"Authorization": "Basic " + base64.b64encode(b"alice:anything").decode()}
            r = request(port, "GET", "/cgi-bin/messages", headers=basic)
            check(r.json and r.json.get("error", {}).get("code") == "unauthorized", f"{r!r}")
            check(r.site_messages is None, f"{r!r}")

        if kind == "busybox-httpd":
            @test(f"{kind}: a POST with Content-Length: 0 (no CONTENT_LENGTH) marks a message read")
            def _():
                out = inst.pb("send", "--from", "bob", "--to", "alice", "--subject", "zero", "--body", "b").stdout
                inst.pb("drain", check=False)
                ident = out.split()[2] if out.startswith("stored message ") else None
                if ident is None:
                    r = request(port, "GET", "/cgi-bin/messages", cookie=alice)
                    ident = str(r.json["messages"][0]["id"])
                r = request(port, "POST", f"/cgi-bin/messages/{ident}/read", cookie=alice,
                            headers={"Content-Length": "0", "Origin": f"http://127.0.0.1:{port}"})
                check(r.status == 200, f"status {r.status}: {r!r}")
                check_site_messages(r, "read")

            @test(f"{kind}: the site's own Perl program, wrapped (*.pl:piggyback-wrap), answers with site_messages")
            def _():
                r = request(port, "GET", "/cgi-bin/hello.pl", cookie=alice)
                check(r.status == 200 and r.json and r.json.get("from") == "perl", f"{r!r}")
                check_site_messages(r, "hello.pl")
        else:
            @test(f"{kind}: every status reaches the client as 200 (the limitation docs/DEPLOY.md names)")
            def _():
                r = request(port, "GET", "/cgi-bin/messages/987654321", cookie=alice)
                check(r.status == 200 and r.json["error"]["code"] == "not_found", f"{r!r}")

            python_wrap_suite(server, inst, alice)
    finally:
        server.stop()
def fastcgi_suite(server, inst, alice):
    """What only a kept process can get wrong."""
    label = server.kind
    port = server.port

    @test(f"{label}: the programs are FastCGI processes that serve many requests")
    def _():
        before = set(server.programs_left())
        check(before, "no program process is running between requests")
        for _ in range(20):
            r = request(port, "GET", "/cgi-bin/profile", cookie=alice)
            check(r.status == 200, f"status {r.status}: {r!r}")
        after = set(server.programs_left())
        check(before & after, f"no program process survived 20 requests: {sorted(before)} then {sorted(after)}")

    @test(f"{label}: one request's identity does not reach the next one")
    def _():
        for _ in range(10):
            r = request(port, "GET", "/cgi-bin/messages", cookie=alice)
            check(r.status == 200 and r.site_messages is not None, f"alice: {r!r}")
            r = request(port, "GET", "/cgi-bin/messages")
            check(r.status == 401 and r.site_messages is None, f"anonymous after alice: {r!r}")


def msqd_suite(server, inst, alice, bob):
    """The optional queue keeper, run as the server's user beside the server."""
    label = server.kind
    kw = {}
    if IS_ROOT:
        kw = {"user": RUN_USER, "group": server.env()["PIGGYBACK_GROUP"], "extra_groups": []}
    log_file = open(inst.root / "log/msqd.log", "ab")
    proc = subprocess.Popen([inst.cli, "--db", str(inst.db), "msqd", "--checkpoint-secs", "1"],
                            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                            cwd=str(inst.root), start_new_session=True, **kw)
    try:
        @test(f"{label}: with piggyback msqd running as the server's user, 20 concurrent sends are announced once each")
        def _():
            time.sleep(0.3)
            check(proc.poll() is None, f"msqd exited {proc.returncode}: {(inst.root / 'log/msqd.log').read_text()[-500:]}")
            request(server.port, "GET", "/cgi-bin/profile", cookie=alice)  # take what is waiting
            tag = secrets.token_hex(3)
            # A sender made here, with a name no other test uses: the send limits count
            # per sender (PIGGYBACK_SEND_RATE a minute) and per sender and recipient (a
            # day), so no earlier test's sends (bob's, the browser tests') count against
            # these 20.
            sender = f"ivan_{tag}"
            inst.add_user(sender)
            ivan = inst.token(sender)
            with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
                sends = list(pool.map(lambda i: request(server.port, "POST", "/cgi-bin/messages", {
                    "to": "alice", "subject": f"msqd {tag} {i}", "body": "through the keeper",
                    "idempotency_key": f"{tag}-{i}"}, cookie=ivan), range(20)))
            check(all(r.status in (201, 202) for r in sends), f"send statuses {sorted(r.status for r in sends)}")
            seen = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len([x for x in seen if x.startswith(f"msqd {tag}")]) < 20:
                with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
                    for r in pool.map(lambda _: request(server.port, "GET", "/cgi-bin/messages", cookie=alice),
                                      range(10)):
                        if r.status == 200:
                            seen += [it["subject"] for it in check_site_messages(r, "msqd")["items"]]
            mine = [x for x in seen if x.startswith(f"msqd {tag}")]
            check(len(mine) == 20 and len(set(mine)) == 20,
                  f"announced {len(mine)} ({len(set(mine))} distinct) of 20")

        @test(f"{label}: piggyback msqd alone applies request files that no request drains")
        def _():
            # Every request drains the spool itself, so sends through the server would be
            # applied without msqd. These files are written straight into new/ and no
            # request is made until they are stored: only msqd can have applied them.
            check(proc.poll() is None, f"msqd exited {proc.returncode}")
            ids = {n: json.loads(inst.pb("user", "show", n).stdout)["id"] for n in ("alice", "bob")}
            spool = inst.db.parent / "spool"
            owner = (spool / "new").stat()
            tag = secrets.token_hex(3)
            for i in range(5):
                request_id = f"{time.time_ns():020x}.{os.getpid():x}.{tag}{i}"
                payload = json.dumps({"type": "send", "request_id": request_id, "from": ids["bob"], "to": ids["alice"],
                                      "subject": f"msqd-only {tag} {i}", "body": "applied by the keeper",
                                      "kind": "note", "idempotency_key": None, "sent_at": int(time.time())},
                                     separators=(",", ":")).encode()
                tmp = spool / "tmp" / request_id
                tmp.write_bytes(f"PBQ1 {len(payload)} {hashlib.sha256(payload).hexdigest()}\n".encode() + payload)
                tmp.chmod(0o600)
                os.chown(tmp, owner.st_uid, owner.st_gid)
                tmp.rename(spool / "new" / request_id)
            deadline, stored = time.monotonic() + 10, 0
            while time.monotonic() < deadline and stored < 5:
                time.sleep(0.2)
                with sqlite3.connect(f"file:{inst.db}?mode=ro", uri=True) as db:
                    stored = db.execute("SELECT count(*) FROM messages WHERE subject LIKE ?",
                                        (f"msqd-only {tag} %",)).fetchone()[0]
            check(stored == 5, f"{stored} of 5 request files stored by msqd within 10 s")
            left = [f.name for f in (spool / "new").iterdir() if tag in f.name]
            check(not left, f"applied but left in new/: {left}")

        @test(f"{label}: piggyback msqd stops cleanly on SIGTERM, leaving the spool empty")
        def _():
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                raise Failure("msqd did not stop within 15 s")
            check(code == 0, f"msqd exited {code}: {(inst.root / 'log/msqd.log').read_text()[-500:]}")
            p = inst.pb("check", check=False)
            check(p.returncode == 0, f"piggyback check exit {p.returncode}: {p.stdout.strip()} {p.stderr.strip()}")
            spool = inst.db.parent / "spool"
            # Request files live in the spool's folders; its root holds the mark whose time
            # says when a request last recovered claims and the send limits' database.
            left = [str(f.relative_to(spool)) for f in spool.rglob("*") if f.is_file() and f.parent != spool]
            check(not left, f"request files left in the spool: {left[:5]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        log_file.close()


def stderr_suite(kind, work):
    """A program with an unusable PIGGYBACK_DB: 500 and a line in the log."""
    inst = Install(work / f"{kind}-broken")
    inst.add_user("alice")
    alice = inst.token("alice")
    # The configured database path now names a directory: unusable.
    for f in inst.db.parent.glob("piggyback.db*"):
        f.unlink()
    inst.db.mkdir()
    if IS_ROOT:
        shutil.chown(inst.db, RUN_USER)
    server = Server(kind, inst).start()
    try:
        @test(f"{kind}: a program's stderr line lands in the server's log")
        def _():
            before = server.cgi_log.read_bytes() if server.cgi_log.exists() else b""
            r = request(server.port, "GET", "/cgi-bin/profile", cookie=alice)
            check(r.status == 500, f"status {r.status}: {r!r}")
            check(isinstance(r.json, dict) and "error" in r.json, f"not a JSON error: {r!r}")
            check(r.site_messages is None, "a 500 carried site_messages")
            deadline = time.monotonic() + 3
            new = b""
            while time.monotonic() < deadline:
                now = server.cgi_log.read_bytes() if server.cgi_log.exists() else b""
                new = now[len(before):]
                if b"PIGGYBACK_DB" in new:
                    break
                time.sleep(0.1)
            check(b"PIGGYBACK_DB" in new, f"{server.cgi_log} got no line naming PIGGYBACK_DB: {new[-500:]!r}")
    finally:
        server.stop()


# Enough new messages that announcing them takes seconds (about 5 s per
# million here): Apache kills after 1 s, lighttpd after about 3 s.
BULK_NEW = {"lighttpd": 2_000_000}
BULK_NEW_DEFAULT = 1_000_000


def bulk_new_messages(db, recipient, sender, n):
    """Give `recipient` n new messages at once, straight in SQL (the CLI would
    take hours), keeping the per-user counters right. Knows the schema of
    src/message_store.rs: messages and mailbox."""
    con = sqlite3.connect(str(db), timeout=10, isolation_level=None)
    try:
        (rid,) = con.execute("SELECT id FROM users WHERE name = ?", (recipient,)).fetchone()
        (sid,) = con.execute("SELECT id FROM users WHERE name = ?", (sender,)).fetchone()
        con.execute("BEGIN IMMEDIATE")
        con.execute(
            """WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?)
               INSERT INTO messages (request_id, sender_id, recipient_id, subject, body, sent_at, state)
               SELECT 'e2e-bulk-' || i, ?, ?, 'bulk ' || i, 'one of many', strftime('%s', 'now'), 'new' FROM k""",
            (n, sid, rid))
        con.execute("INSERT OR IGNORE INTO mailbox (user_id) VALUES (?)", (rid,))
        con.execute("UPDATE mailbox SET new = new + ? WHERE user_id = ?", (n, rid))
        con.execute("COMMIT")
    finally:
        con.close()


def timeout_suite(kind, work):
    """A CGI killed by the server's timeout, in the middle of its transaction,
    leaves the database consistent."""
    inst = Install(work / f"{kind}-timeout")
    for u in ("alice", "bob"):
        inst.add_user(u)
    alice, bob = inst.token("alice"), inst.token("bob")
    # Marking a million unread messages read is one transaction of seconds, longer
    # than the server lets a CGI stay silent (Apache: 1 s; lighttpd checks once a
    # second and kills after about 3 s). (Announcing them no longer is: a claim
    # flips at most 100, whatever the backlog.)
    bulk = BULK_NEW.get(kind, BULK_NEW_DEFAULT)
    t0 = time.monotonic()
    bulk_new_messages(inst.db, "alice", "bob", bulk)
    log(f"    ({kind}: {bulk} new messages for alice in {time.monotonic() - t0:.1f}s)")
    server = Server(kind, inst, cgi_timeout=1).start()
    try:
        @test(f"{kind}: a CGI killed by the server timeout mid-transaction leaves the database consistent")
        def _():
            t1 = time.monotonic()
            r = request(server.port, "POST", "/cgi-bin/messages/read-all", body={}, cookie=alice, timeout=60)
            took = time.monotonic() - t1
            check(r.status == 504, f"status {r.status} after {took:.1f}s (expected the server's 504): {r!r}")
            deadline = time.monotonic() + 5
            while server.programs_left() and time.monotonic() < deadline:
                time.sleep(0.1)
            check(not server.programs_left(), f"killed program still running: {server.programs_left()}")
            p = inst.pb("check", check=False)
            check(p.returncode == 0, f"piggyback check exit {p.returncode}: {p.stdout.strip()} {p.stderr.strip()}")
            # Nothing of the killed transaction stayed: all still new, none read.
            con = sqlite3.connect(str(inst.db), timeout=10)
            try:
                new, delivered = con.execute(
                    "SELECT new, delivered FROM mailbox JOIN users ON users.id = user_id WHERE name = 'alice'").fetchone()
            finally:
                con.close()
            # All or nothing: rolled back (killed mid-transaction) or, when the
            # machine was quick, committed just before the kill.
            check((new, delivered) in ((bulk, 0), (0, 0)),
                  f"alice's counters after the kill: new={new} delivered={delivered}")
            outcome = "rolled back" if new == bulk else "committed before the kill"
            r = request(server.port, "GET", "/cgi-bin/messages", cookie=bob)
            check(r.status == 200, f"another user's request after the kill: {r!r}")
            check_site_messages(r, "after the kill")
            log(f"    ({kind}: killed after {took:.1f}s; its transaction {outcome})")
    finally:
        server.stop()
        if not KEEP:
            # Hundreds of MB: a failed run keeps its work directory, but not this.
            for f in inst.db.parent.glob("piggyback.db*"):
                f.unlink()


BROWSER_LEASE = 5  # seconds: PIGGYBACK_ACK_LEASE of the browser test's server
BROWSER_POLL = 2   # seconds: PIGGYBACK_POLL_INTERVAL of the browser test's server


def browser_suite(label, server, inst, work):
    """Headless Chromium against a lighttpd of its own on the same install, whose
    config is the project's with a short acknowledgement lease and poll interval
    (so the lost-answer and idle tests take seconds), plus a host page that is
    not the demo (tests/e2e/host.html) in its htdocs."""
    node = shutil.which("node")
    modules = REPO / "tests/e2e/node_modules/playwright-core"
    if not node or not modules.exists():
        @test(f"{label}: browser tests (playwright-core installed)")
        def _():
            raise Failure("node or tests/e2e/node_modules/playwright-core missing: run scripts/e2e")
        return
    conf = (CONFIGS / "lighttpd.conf").read_text()
    for name, value in (("PIGGYBACK_ACK_LEASE", BROWSER_LEASE), ("PIGGYBACK_POLL_INTERVAL", BROWSER_POLL)):
        before = conf
        conf = re.sub(rf'("{name}"\s*=>\s*)"\d+"', rf'\g<1>"{value}"', conf)
        if conf == before:
            raise RuntimeError(f"cgi-bin-config/lighttpd.conf sets no {name}")
    conf_path = work / "lighttpd-browser.conf"
    conf_path.write_text(conf)
    conf_path.chmod(0o644)
    shutil.copy(REPO / "tests/e2e/host.html", inst.root / "htdocs/host.html")
    (inst.root / "htdocs/host.html").chmod(0o644)
    # The same page with the script tag docs/DEPLOY.md shows, settings and all.
    deploy = (REPO / "docs/DEPLOY.md").read_text()
    tag = re.search(r"```html\n(<script src=\"/piggyback.js\"[^\n]*</script>)\n```", deploy)
    if not tag:
        raise RuntimeError("docs/DEPLOY.md shows no piggyback.js script tag")
    host = (REPO / "tests/e2e/host.html").read_text()
    plain = '<script src="/piggyback.js"></script>'
    if plain not in host:
        raise RuntimeError("tests/e2e/host.html has no plain piggyback.js script tag")
    (inst.root / "htdocs/host-doc.html").write_text(host.replace(plain, tag.group(1)))
    (inst.root / "htdocs/host-doc.html").chmod(0o644)
    # A program of the site that redirects to the URL in its query: the origin test's
    # same-origin request that ends at another origin.
    redirect = inst.root / "cgi-bin/redirect-away"
    redirect.write_text("#!/bin/sh\nprintf 'Status: 302 Found\\r\\nLocation: %s\\r\\n"
                        "Content-Type: text/plain\\r\\n\\r\\nmoved\\n' \"$QUERY_STRING\"\n")
    redirect.chmod(0o755)
    browser_server = Server("lighttpd", inst)
    browser_server.cmd = [which("lighttpd"), "-D", "-f", str(conf_path)]
    browser_server.start()
    # Users of their own, so the server tests' messages do not interfere.
    users = ("dave", "erin", "frank", "gina", "hana")
    for u in users:
        inst.add_user(u)
    shots = REPO / "target/e2e-screenshots" / time.strftime("%Y%m%dT%H%M%S")
    shots.mkdir(parents=True, exist_ok=True)
    log(f"    browser screenshots: {shots}")
    cfg = {
        "url": f"http://127.0.0.1:{browser_server.port}/",
        "password": inst.passwords.get("dave"),
        "cookies": {u: inst.token(u) for u in users},
        "send": [inst.cli, "--db", str(inst.db), "send"],
        "show": [inst.cli, "--db", str(inst.db), "user", "show"],
        "redirect": "/cgi-bin/redirect-away",
        "chromium": os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        "profile_root": str(Path(tempfile.mkdtemp(prefix="chromium-", dir=work))),
        "screenshots": str(shots),
        "lease": BROWSER_LEASE,
        "poll": BROWSER_POLL,
    }
    env = dict(os.environ, PIGGYBACK_SECRET_FILE=str(inst.secret))
    t0 = time.monotonic()
    try:
        p = subprocess.run([node, str(REPO / "tests/e2e/browser.mjs"), json.dumps(cfg)], capture_output=True,
                           text=True, env=env, cwd=str(REPO / "tests/e2e"), timeout=300)
    finally:
        browser_server.stop()
        redirect.unlink()
    lines = [l for l in p.stdout.splitlines() if l.startswith(("ok ", "not ok "))]
    for line in lines:
        if line.startswith("ok "):
            RESULTS.append((f"{label}: {line[3:]}", True, ""))
            print(f"ok   {label}: {line[3:]}", flush=True)
        else:
            name, _, why = line[7:].partition(": ")
            RESULTS.append((f"{label}: {name}", False, why))
            print(f"FAIL {label}: {name}: {why}", flush=True)
    if p.returncode != 0 and not any(l.startswith("not ok") for l in lines):
        RESULTS.append((f"{label}: browser tests", False, f"node exited {p.returncode}"))
        print(f"FAIL {label}: browser tests: node exited {p.returncode}\n{p.stderr[-3000:]}", flush=True)
    elif p.returncode != 0 and VERBOSE:
        log(p.stderr[-3000:])
    kept = sorted(f.name for f in shots.iterdir())
    print(f"browser screenshots kept in {shots}: {', '.join(kept) or 'none'}", flush=True)
    log(f"    (browser tests took {time.monotonic() - t0:.1f}s)")


class PgInstall(Install):
    """An install whose database is the PostgreSQL URL `url`, with its own spool:
    one web host of a site that several hosts serve."""

    def __init__(self, root, url, secret_from=None):
        super().__init__(root)
        self.db = url
        self.spool = self.root / "data/spool"
        if secret_from is not None:
            # Every host signs and checks cookies with the same key.
            shutil.copyfile(secret_from, self.secret)

    def pb(self, *args, input=None, check=True):
        return super().pb("--spool", str(self.spool), *args, input=input, check=check)

    def lighttpd_conf(self):
        """cgi-bin-config/lighttpd.conf with PIGGYBACK_DB set to the URL."""
        text = (CONFIGS / "lighttpd.conf").read_text()
        line = '"PIGGYBACK_DB"            => var.root + "/data/piggyback.db",'
        if line not in text:
            raise RuntimeError("lighttpd.conf no longer sets PIGGYBACK_DB as this test expects")
        conf = self.root / "etc/lighttpd-postgres.conf"
        conf.write_text(text.replace(line, f'"PIGGYBACK_DB"            => "{self.db}",'))
        return conf


def postgres_suite(work):
    """Two lighttpd instances (two web hosts, each with its own spool) on one
    PostgreSQL database reached through pgbouncer, and the database going away."""
    cluster = work / "pg"
    out = subprocess.run([str(REPO / "scripts/pg-cluster"), "start", str(cluster)], capture_output=True,
                         text=True, check=True).stdout
    urls = {k: shlex.split(v)[0] for k, v in (line.split("=", 1) for line in out.split())}
    try:
        a = PgInstall(work / "host-a", urls["PIGGYBACK_PGBOUNCER_URL"])
        b = PgInstall(work / "host-b", urls["PIGGYBACK_PGBOUNCER_URL"], secret_from=a.secret)
        PROGRAMS[:] = [p for p in ALL_PROGRAMS if (a.root / "cgi-bin" / p).exists()]
        a.pb("init")
        b.pb("init")  # idempotent: the second host finds the schema made
        for u in ("alice", "bob"):
            a.add_user(u)
        servers = []
        for inst in (a, b):
            server = Server("lighttpd", inst)
            server.cmd = [which("lighttpd"), "-D", "-f", str(inst.lighttpd_conf())]
            servers.append(server.start())
        host_a, host_b = servers
        alice, bob = a.token("alice"), b.token("bob")
        label = "postgresql, two lighttpd hosts"

        @test(f"{label}: a message sent through one host is announced exactly once through the other")
        def _():
            tag = secrets.token_hex(3)
            r = send_via_cgi(host_a, alice, "bob", f"across {tag}", "sent on host a")
            check(r.status == 201, f"the send was applied at once: {r!r}")
            first = request(host_b.port, "GET", "/cgi-bin/profile", cookie=bob)
            sm = check_site_messages(first, "host b")
            subjects = [i["subject"] for i in sm["items"]]
            check(subjects == [f"across {tag}"], f"announced on host b: {sm}")
            for host in (host_b, host_a):
                again = check_site_messages(request(host.port, "GET", "/cgi-bin/profile", cookie=bob), "again")
                check(again["new"] == 0 and again["items"] == [] and again["delivered"] == 1,
                      f"announced once only: {again}")

        @test(f"{label}: concurrent requests on both hosts announce 20 messages sent through both exactly once")
        def _():
            tag = secrets.token_hex(3)

            def send(i):
                host = (host_a, host_b)[i % 2]
                return request(host.port, "POST", "/cgi-bin/messages", {
                    "to": "bob", "subject": f"{tag} {i}", "body": "x", "idempotency_key": f"{tag}-{i}"},
                    cookie=alice)

            def read(i):
                return request((host_a, host_b)[i % 2].port, "GET", "/cgi-bin/messages", cookie=bob)

            with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
                sends = [pool.submit(send, i) for i in range(20)]
                reads = [pool.submit(read, i) for i in range(20)]
                sends, reads = [f.result() for f in sends], [f.result() for f in reads]
            check(all(r.status in (201, 202) for r in sends), f"send statuses {[r.status for r in sends]}")
            a.pb("drain")
            b.pb("drain")
            reads += [request(h.port, "GET", "/cgi-bin/profile", cookie=bob) for h in (host_a, host_b)]
            seen = [i["subject"] for r in reads for i in check_site_messages(r, "read")["items"]]
            mine = sorted(x for x in seen if x.startswith(tag))
            check(mine == sorted(f"{tag} {i}" for i in range(20)), f"each once: {mine}")
            a.pb("check")

        @test(f"{label}: with PostgreSQL stopped behind pgbouncer every program answers 503 with Retry-After, "
              "never 500, and 200 once it is back")
        def _():
            # pgbouncer stays up: each request waits its query_wait_timeout, then is refused.
            subprocess.run([str(REPO / "scripts/pg-cluster"), "stop-postgres", str(cluster)], check=True)
            try:
                for prog in [p for p in PROGRAMS if p != "session"]:
                    r = request(host_a.port, "GET", f"/cgi-bin/{prog}", cookie=bob)
                    check(r.status == 503 and r.header("Retry-After") == "1", f"{prog}: {r!r}")
                r = request(host_b.port, "POST", "/cgi-bin/messages",
                            {"to": "bob", "subject": "while down", "body": "x"}, cookie=alice)
                check(r.status in (202, 503), f"a send while the database is down: {r!r}")
                if r.status == 503:
                    check(r.header("Retry-After") == "1", f"{r!r}")
            finally:
                subprocess.run([str(REPO / "scripts/pg-cluster"), "start", str(cluster)], check=True,
                               capture_output=True)
            r = request(host_b.port, "GET", "/cgi-bin/profile", cookie=bob)
            check(r.status == 200, f"back after the restart: {r!r}")
            a.pb("check")
    finally:
        stop_all()
        subprocess.run([str(REPO / "scripts/pg-cluster"), "stop", str(cluster)])


# --- the site's own application, integrated as docs/INTEGRATE.md says ------------

SITE_APP = REPO / "tests/e2e/site-app"
SITE_USER = "www-data"  # the user INTEGRATE.md's blocks name
SITE_KINDS = ("site-app-apache", "site-app-lighttpd", "site-app-nginx")


def site_base_config(kind, root, www, port, block):
    """What a site owner's server has before Piggyback (its document root, its index
    page, where it logs) around INTEGRATE.md's block, included as a file of its own."""
    user_lines = IS_ROOT
    if kind == "site-app-apache":
        mods = ["mpm_event", "authz_core", "mime", "dir", "alias", "env", "actions", "cgid"]
        loads = "\n".join(f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so" for m in mods)
        return f"""ServerRoot "{root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
{loads}
{f"User {SITE_USER}" if user_lines else ""}
{f"Group {SITE_USER}" if user_lines else ""}
PidFile "{root}/run/site-apache.pid"
DefaultRuntimeDir "{root}/run"
ScriptSock "{root}/run/site-cgid.sock"
ErrorLog "{root}/log/site-apache-error.log"
LogLevel warn
TypesConfig /etc/mime.types
DirectoryIndex index.php
<Directory />
    AllowOverride None
    Require all denied
</Directory>
DocumentRoot "{www}"
<Directory "{www}">
    Options None
    Require all granted
</Directory>
Include "{block}"
"""
    if kind == "site-app-lighttpd":
        return f"""server.modules = ( "mod_access", "mod_alias" )
server.document-root = "{www}"
server.bind = "127.0.0.1"
server.port = {port}
server.pid-file = "{root}/run/site-lighttpd.pid"
server.errorlog = "{root}/log/site-lighttpd-error.log"
server.breakagelog = "{root}/log/site-cgi-stderr.log"
{f'server.username = "{SITE_USER}"' if user_lines else ""}
{f'server.groupname = "{SITE_USER}"' if user_lines else ""}
index-file.names = ( "index.php" )
mimetype.assign = ( ".html" => "text/html; charset=utf-8", ".js" => "text/javascript; charset=utf-8" )
include "{block}"
"""
    return f"""daemon off;
master_process on;
worker_processes 1;
{f"user {SITE_USER} {SITE_USER};" if user_lines else ""}
pid {root}/run/site-nginx.pid;
error_log {root}/log/site-nginx-error.log warn;
events {{
    worker_connections 64;
}}
http {{
    access_log off;
    client_body_temp_path {root}/run/site-nginx-body;
    proxy_temp_path       {root}/run/site-nginx-proxy;
    fastcgi_temp_path     {root}/run/site-nginx-fastcgi;
    uwsgi_temp_path       {root}/run/site-nginx-uwsgi;
    scgi_temp_path        {root}/run/site-nginx-scgi;
    include /etc/nginx/mime.types;
    server {{
        listen 127.0.0.1:{port};
        server_name 127.0.0.1;
        root {www};
        index index.php;
        include {block};
    }}
}}
"""


def site_app_suite(kind, work):
    """The PHP application of tests/e2e/site-app under `kind`'s server, with
    Piggyback installed, configured and added exactly as docs/INTEGRATE.md shows
    (its blocks run with /srv/piggyback, /var/www/site and the fcgiwrap socket
    replaced by this run's paths), then driven in Chromium (tests/e2e/site-app.mjs)."""
    label = kind
    root = work / kind
    app = work / f"{kind}-app"
    www = app / "www"

    def doc(marker):
        return (integrate_block(marker).replace("/srv/piggyback", str(root)).replace("/var/www/site", str(www))
                .replace("/run/fcgiwrap.socket", str(root / "run/site-fcgiwrap.sock")))

    # 1. Install, and the doctor.
    p = subprocess.run(["bash", "-c", doc("install")], cwd=str(REPO), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"INTEGRATE.md's install failed: {p.stderr[-2000:]}")
    inst = Install.__new__(Install)
    inst.root, inst.db, inst.secret = root, root / "data/piggyback.db", root / "etc/secret"
    inst.cli, inst.passwords = str(root / "bin/piggyback"), {}
    # 2. The application, as its owner has it, then its settings in Piggyback's file.
    shutil.copytree(SITE_APP, app)
    for d, _, files in os.walk(app):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    (app / "data").mkdir()
    passwords = {u: secrets.token_urlsafe(9) for u in ("ann", "cat")}
    subprocess.run(["php", str(app / "setup.php"), str(app / "data/app.sqlite"),
                    *[f"{u}:{pw}" for u, pw in passwords.items()]], check=True, capture_output=True)
    if IS_ROOT:
        subprocess.run(["chown", "-R", f"{SITE_USER}:{SITE_USER}", str(app / "data")], check=True)
    conf = root / "etc/piggyback-wrap.conf"
    lines = [l for l in conf.read_text().splitlines() if not l.startswith("PIGGYBACK_WRAP_ROOT=")]
    conf.write_text("\n".join(lines) + "\n" + doc("site-settings"))
    # 3. The identity line in the shared include, the script tag in the shared header.
    common = www / "inc/common.php"
    common.write_text(common.read_text() + "\n" + doc("user-header-php"))
    header = www / "inc/header.php"
    header.write_text(header.read_text().replace("</head>", doc("script-tag") + "</head>"))

    @test(f"{label}: piggyback doctor, as INTEGRATE.md shows it, passes the install")
    def _():
        command = doc("doctor").strip()
        if not IS_ROOT:
            command = command.replace(f" --as {SITE_USER}", "")
        r = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
        check(r.returncode == 0, f"{command}: exit {r.returncode}: {r.stdout} {r.stderr}")

    # 4. The server, with the block.
    server_kind = kind.removeprefix("site-app-")
    block = root / f"run/{kind}-block.conf"
    block.write_text(doc(server_kind))
    server = Server(kind, inst)
    conf_path = root / f"run/{kind}.conf"
    conf_path.write_text(site_base_config(kind, root, www, server.port, block))
    for f in (block, conf_path):
        f.chmod(0o644)
    if server_kind == "apache":
        server.cmd = [which("apache2"), "-f", str(conf_path), "-DFOREGROUND"]
    elif server_kind == "lighttpd":
        server.cmd = [which("lighttpd"), "-D", "-f", str(conf_path)]
    else:
        # `include fastcgi_params` is read beside the configuration, as in /etc/nginx.
        shutil.copy("/etc/nginx/fastcgi_params", root / "run/fastcgi_params")
        server.cmd = [which("nginx"), "-p", str(root), "-e", str(root / "log/site-nginx-error.log"),
                      "-c", str(conf_path)]
        sock = root / "run/site-fcgiwrap.sock"
        kw = {"user": SITE_USER, "group": SITE_USER, "extra_groups": []} if IS_ROOT else {}
        out = open(root / "log/site-fcgiwrap.log", "ab")
        server.fcgiwrap = subprocess.Popen([which("fcgiwrap"), "-c", "4", "-s", f"unix:{sock}"],
                                           env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=subprocess.STDOUT, cwd=str(root),
                                           start_new_session=True, **kw)
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    server.start()
    inst.pb("user", "add", "bob")
    node = shutil.which("node")
    cfg = {
        "url": f"http://127.0.0.1:{server.port}/",
        "passwords": passwords,
        "send": [inst.cli, "--db", str(inst.db), "send"],
        "chromium": os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        "profile_root": str(Path(tempfile.mkdtemp(prefix="chromium-", dir=work))),
    }
    try:
        p = subprocess.run([node, str(REPO / "tests/e2e/site-app.mjs"), json.dumps(cfg)], capture_output=True,
                           text=True, cwd=str(REPO / "tests/e2e"), timeout=300)
    finally:
        server.stop()
    lines = [l for l in p.stdout.splitlines() if l.startswith(("ok ", "not ok "))]
    for line in lines:
        if line.startswith("ok "):
            RESULTS.append((f"{label}: {line[3:]}", True, ""))
            print(f"ok   {label}: {line[3:]}", flush=True)
        else:
            name, _, why = line[7:].partition(": ")
            RESULTS.append((f"{label}: {name}", False, why))
            print(f"FAIL {label}: {name}: {why}", flush=True)
    if p.returncode != 0 and not any(l.startswith("not ok") for l in lines):
        RESULTS.append((f"{label}: site app tests", False, f"node exited {p.returncode}"))
        print(f"FAIL {label}: site app tests: node exited {p.returncode}\n{p.stderr[-3000:]}", flush=True)
    elif VERBOSE:
        log(p.stderr[-3000:])


def main():
    global VERBOSE, KEEP
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", default=DEFAULT_SERVERS,
                    help="comma-separated: lighttpd, apache-event-cgid, apache-prefork-cgi, nginx-fcgiwrap, "
                         "lighttpd-fastcgi, apache-fcgid, nginx-spawn-fcgi, busybox-httpd, python-http-server, postgres, "
                         "site-app-apache, site-app-lighttpd, site-app-nginx")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    VERBOSE = args.verbose
    KEEP = args.keep
    known = set(DEFAULT_SERVERS.split(","))
    unknown = [kind for kind in args.servers.split(",") if kind not in known]
    if unknown:
        ap.error(f"unknown server kind {', '.join(unknown)}: choose from {', '.join(sorted(known))}")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    work = Path(tempfile.mkdtemp(prefix="piggyback-e2e-"))
    work.chmod(0o755)  # the servers' user must reach the installs below
    log(f"e2e: work directory {work}" + (" (kept)" if args.keep else ""))
    failed_setup = False
    try:
        for kind in args.servers.split(","):
            try:
                if kind == "postgres":
                    postgres_suite(work)
                elif kind in ("busybox-httpd", "python-http-server"):
                    plain_server_suite(kind, work)
                elif kind in SITE_KINDS:
                    site_app_suite(kind, work)
                else:
                    server_suite(kind, work)
            except Exception as e:
                failed_setup = True
                RESULTS.append((f"{kind}: setup", False, repr(e)))
                print(f"FAIL {kind}: setup: {e!r}", flush=True)
                if VERBOSE:
                    traceback.print_exc()
            finally:
                stop_all()
    finally:
        stop_all()
        leftovers = [s for s in STARTED if s.proc and s.proc.poll() is None]
        if leftovers:
            log(f"e2e: servers still running: {[s.proc.pid for s in leftovers]}")
        failed = [r for r in RESULTS if not r[1]]
        if failed and not args.keep:
            log(f"e2e: keeping {work} for the logs of the failures")
        elif not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    passed = sum(1 for r in RESULTS if r[1])
    failed = len(RESULTS) - passed
    if failed:
        print("\nfailures:")
        for name, ok, why in RESULTS:
            if not ok:
                print(f"  {name}: {why}")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed or failed_setup or not RESULTS else 0


if __name__ == "__main__":
    sys.exit(main())
