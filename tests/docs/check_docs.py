#!/usr/bin/env python3
"""Holds the docs to the code: what a newcomer copies from them must exist.

Run by scripts/test after the release build. For every Markdown file of the project
(README.md, ARCHITECTURE.md, docs/*.md):

- every `PIGGYBACK_*` variable the text names is read somewhere in the code, the
  scripts or the shipped configurations (a variable the docs name and nothing reads is
  the "PIGGYBACK_USER vs PIGGYBACK_RUN_USER" mistake);
- in every shell block (```sh, ```bash, ```console), each command line that runs a
  project script (`scripts/NAME`) names an executable script, and each `--option` it
  passes appears in that script;
- each command line that runs `piggyback SUBCOMMAND …` names a subcommand whose
  `--help` answers, and each `--option` it passes appears in that help;
- every path under `cgi-bin-config/`, `scripts/`, `web/` or `docs/` that the text names
  exists.

Usage: tests/docs/check_docs.py BIN_DIR   (the folder holding the built `piggyback`)
Prints one line per problem and "docs: N checks, N problems"; exit 1 on any problem.
"""
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", REPO / "ARCHITECTURE.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"sh", "bash", "shell", "console"}
# Variables the docs may name that the project itself does not read: set for other programs.
FOREIGN_VARS = set()

problems = []
checks = 0


def problem(doc, what):
    problems.append(f"{doc.relative_to(REPO)}: {what}")


def code_corpus():
    parts = []
    for folder in ("src", "bin", "scripts", "cgi-bin-config", "tests", "web"):
        for f in (REPO / folder).rglob("*"):
            if f.is_file() and f.suffix not in {".md", ".png"} and "node_modules" not in f.parts:
                try:
                    parts.append(f.read_text(errors="replace"))
                except OSError:
                    pass
    return "\n".join(parts)


def shell_blocks(text):
    for m in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```", text, re.S | re.M):
        if m.group(1) in SHELL_LANGS:
            yield m.group(2)


def command_lines(block):
    joined = re.sub(r"\\\n\s*", " ", block)
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
            part = part.split(" #", 1)[0].strip()
            if part:
                yield part


def words_of(command):
    try:
        words = shlex.split(command)
    except ValueError:
        return []
    while words and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]) or words[0] in ("sudo", "env", "exec", "time")):
        words.pop(0)
    return words


def options(words):
    return sorted({w.split("=", 1)[0] for w in words if w.startswith("--") and len(w) > 2})


def check_script(doc, words):
    global checks
    name = words[0]
    if name.startswith("./"):
        name = name[2:]
    path = REPO / name
    checks += 1
    if not path.is_file():
        problem(doc, f"`{' '.join(words)}`: {name} does not exist")
        return
    if not path.stat().st_mode & 0o111:
        problem(doc, f"`{name}` is not executable")
    text = path.read_text(errors="replace")
    for opt in options(words[1:]):
        checks += 1
        if opt not in text:
            problem(doc, f"`{' '.join(words)}`: {name} knows no option {opt}")


def check_piggyback(doc, words, bin_dir):
    global checks
    sub = []
    rest = words[1:]
    # Global options before the subcommand (`--db PATH`, `--spool PATH`) take a value.
    while rest and rest[0].startswith("--"):
        rest = rest[1:] if "=" in rest[0] else rest[2:]
    while rest and not rest[0].startswith("-") and len(sub) < 2 and re.fullmatch(r"[a-z][a-z-]*", rest[0]):
        sub.append(rest.pop(0))
    checks += 1
    r = subprocess.run([str(bin_dir / "piggyback"), *sub, "--help"], capture_output=True, text=True)
    if r.returncode != 0:
        # The second word may be an argument (`user add NAME` is fine; `send alice` is not).
        if len(sub) == 2:
            r = subprocess.run([str(bin_dir / "piggyback"), sub[0], "--help"], capture_output=True, text=True)
        if r.returncode != 0:
            problem(doc, f"`{' '.join(words)}`: `piggyback {' '.join(sub)} --help` fails: {r.stderr.strip()[:200]}")
            return
    for opt in options(words[1:]):
        checks += 1
        if opt not in r.stdout and opt != "--help":
            problem(doc, f"`{' '.join(words)}`: piggyback {' '.join(sub)} has no option {opt}")


def main():
    global checks
    if len(sys.argv) != 2:
        sys.exit("usage: tests/docs/check_docs.py BIN_DIR")
    bin_dir = Path(sys.argv[1])
    corpus = code_corpus()
    for doc in DOCS:
        text = doc.read_text()
        for var in sorted(set(re.findall(r"\bPIGGYBACK_[A-Z0-9_]*[A-Z0-9]\b", text))):
            checks += 1
            if var not in FOREIGN_VARS and var not in corpus:
                problem(doc, f"names {var}, which nothing in the code, scripts or configs reads")
        for path in sorted(set(re.findall(r"(?<![\w/.-])((?:cgi-bin-config|scripts|web|docs)/[A-Za-z0-9_.-]+)", text))):
            checks += 1
            if not (REPO / path.rstrip(".")).exists():
                problem(doc, f"names {path}, which does not exist")
        for block in shell_blocks(text):
            for command in command_lines(block):
                words = words_of(command)
                if not words:
                    continue
                first = words[0]
                if re.fullmatch(r"(\./)?scripts/[A-Za-z0-9_.-]+", first):
                    check_script(doc, words)
                elif first == "piggyback" or first.endswith("/piggyback"):
                    check_piggyback(doc, words, bin_dir)
    for p in problems:
        print(p)
    print(f"docs: {checks} checks, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
