#!/usr/bin/env python3
"""Runs every command the docs show, and fails when one stops working.

Commands are taken, in document order, from README.md, docs/*.md, bench/README.md and broker-config/README.md:
every line of a ```bash block, and inline `code` that starts like a command (bash scripts/…, scripts/fleetlearn …,
bash bench/…). They run from the root of a scratch copy of the repository (tracked and new files; the CLI's
Release build is shared, not rebuilt), in a private network namespace when one can be made, so documented ports
(1883, 8080) collide with nothing. Afterwards `git status` in the copy must show no file holding a private key.

The docs steer the test with an HTML comment right before a block or paragraph:
  <!-- doc-test: skip: REASON -->                   not run (listed in the summary with its reason)
  <!-- doc-test: long; FROM => TO; FROM => TO -->   a long command: run with these literal replacements applied
  <!-- doc-test: long; append: OPTIONS -->          ... or with OPTIONS appended (run-demo.sh: later options win)
  <!-- doc-test: services -->                       lines starting a broker (fleetlearn's or mosquitto), aggregator or agent run in the
                                                    background until they are ready; the other lines then run
                                                    against them; everything started is stopped at the end
Usage: [DOC_COMMANDS_ONLY=REGEX] scripts/doc-commands.py [--list] [--keep]
  (--list: print what would run; --keep: keep the scratch copy and its logs; REGEX: only docs whose path matches)
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ["README.md"] + sorted("docs/" + f for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md")) \
    + ["bench/README.md", "broker-config/README.md"]
INLINE_START = re.compile(r"^(bash scripts/|scripts/fleetlearn |bash bench/|RUNS=\d+ bash bench/|bash broker-config/)")
# Inline code that is a pattern, not a command: placeholders, alternatives, ellipses.
PLACEHOLDER = re.compile(r"[…<>\[\]|]|\b[A-Z]{4,}\b(?!=)")
MARKER = re.compile(r"<!--\s*doc-test:\s*(.*?)\s*-->", re.S)
SERVICE = re.compile(r"^\s*(?:(?:bash )?scripts/fleetlearn\s+(broker|aggregator|agent)\b|(mosquitto)\s)")
READY = {"broker": r"listening on port", "aggregator": r"starting at round|HTTP surface|Application started",
         "agent": r"Application started", "mosquitto": r"mosquitto version \S+ running"}
TIMEOUT = int(os.environ.get("DOC_COMMANDS_TIMEOUT", "240"))


def parse_marker(text):
    """(kind, argument): ('skip', reason) | ('long', [(from, to)]) | ('services', None)."""
    parts = [p.strip() for p in text.split(";")]
    head = parts[0]
    if head.startswith("skip"):
        return "skip", head.partition(":")[2].strip() or "marked skip"
    if head == "long":
        pairs = []
        for p in parts[1:]:
            if p.startswith("append:"):
                pairs.append((None, p[len("append:"):].strip()))
                continue
            if "=>" not in p:
                sys.exit(f"doc-commands: bad replacement '{p}' in marker '{text}' (expected FROM => TO)")
            a, _, b = p.partition("=>")
            pairs.append((a.strip(), b.strip()))
        return "long", pairs
    if head == "services":
        return "services", None
    sys.exit(f"doc-commands: unknown marker '{text}'")


def extract():
    """Units in document order: dicts with file, line, kind ('block'|'inline'), commands (list of str), marker."""
    units = []
    for name in FILES:
        path = os.path.join(ROOT, name)
        if not os.path.exists(path):
            continue
        text = open(path, encoding="utf-8").read()
        lines = text.split("\n")
        pending = None  # marker waiting for the next block or paragraph
        i = 0
        while i < len(lines):
            line = lines[i]
            m = MARKER.search(line)
            if m:
                pending = parse_marker(m.group(1))
                i += 1
                continue
            fence = re.match(r"^\s*```(\w*)\s*$", line)
            if fence:
                lang, start = fence.group(1), i + 1
                j = start
                while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
                    j += 1
                if lang in ("bash", "sh", "shell"):
                    body = "\n".join(lines[start:j])
                    units.append({"file": name, "line": start, "kind": "block", "commands": [body], "marker": pending})
                pending = None
                i = j + 1
                continue
            if line.strip() == "":
                if pending is not None and pending[0] != "inline-pending":
                    pass
                i += 1
                continue
            # A paragraph: its inline commands share the marker right before it.
            para_start = i
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^\s*```", lines[i]) and not MARKER.search(lines[i]):
                para.append(lines[i])
                i += 1
            commands = [c for c in re.findall(r"`([^`\n]+)`", " ".join(para))
                        if INLINE_START.match(c) and not PLACEHOLDER.search(c)]
            if commands:
                units.append({"file": name, "line": para_start + 1, "kind": "inline", "commands": commands, "marker": pending})
            pending = None
    return units


def apply_long(command, pairs, unit):
    for a, b in pairs:
        if a is None:
            command = f"{command} {b}"
            continue
        if not any(a in c for c in unit["commands"]):
            raise SystemExit(f"doc-commands: {unit['file']}:{unit['line']}: marker replacement '{a}' occurs in no command")
        command = command.replace(a, b)
    return command


def scratch_copy():
    """A copy of the working tree (tracked and new files) sharing the CLI's build; a git repository of its own."""
    work = tempfile.mkdtemp(prefix="fleetlearn-doc-commands-")
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.split(b"\0")
    for f in files:
        if not f:
            continue
        rel = f.decode()
        src, dst = os.path.join(ROOT, rel), os.path.join(work, rel)
        if not os.path.isfile(src):
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)  # keeps modification times: the build stays up to date
    os.symlink(os.path.join(ROOT, "src/FleetLearn.Cli/bin"), os.path.join(work, "src/FleetLearn.Cli/bin"))
    env = dict(os.environ, GIT_AUTHOR_NAME="doc-commands", GIT_AUTHOR_EMAIL="doc@localhost",
               GIT_COMMITTER_NAME="doc-commands", GIT_COMMITTER_EMAIL="doc@localhost")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "scratch"]):
        subprocess.run(cmd, cwd=work, check=True, env=env, stdout=subprocess.DEVNULL)
    return work


def run_shell(script, cwd, log, timeout=TIMEOUT):
    """Runs a bash script with -e -o pipefail; returns (exit code, seconds)."""
    start = time.monotonic()
    with open(log, "ab") as out:
        p = subprocess.Popen(["bash", "-c", "set -eo pipefail\n" + script], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        try:
            code = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            code = 124
    return code, time.monotonic() - start


def run_services(block, cwd, log):
    """Lines in order: a service line starts in the background (and is waited for until ready), the lines between run
    as one script each time; `export` and `cd` lines apply to everything after them. Every service is stopped at the end."""
    started, env_lines, pending = [], [], []
    lines = [l for l in re.sub(r"\\\n\s*", " ", block).split("\n") if l.strip() and not l.strip().startswith("#")]

    def flush():
        if not pending:
            return 0
        code, _ = run_shell("\n".join(env_lines + pending) + "\n", cwd, log)
        pending.clear()
        return code

    try:
        for line in lines:
            if line.strip().startswith(("export ", "cd ")):
                env_lines.append(line)
                continue
            m = SERVICE.match(line)
            if not m:
                pending.append(line)
                continue
            if flush() != 0:
                return 1
            service = m.group(1) or m.group(2)
            service_log = f"{log}.{service}{len(started)}"
            script = "\n".join(env_lines + ["exec " + line.split(" #")[0]])
            with open(service_log, "wb") as out:
                p = subprocess.Popen(["bash", "-c", script], cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            started.append((p, service_log))
            deadline = time.monotonic() + 60
            while True:
                text = open(service_log, encoding="utf-8", errors="replace").read()
                if re.search(READY[service], text):
                    break
                if p.poll() is not None or time.monotonic() > deadline:
                    with open(log, "a") as out:
                        out.write(f"service did not become ready: {line}\n{text}\n")
                    return 1
                time.sleep(0.2)  # polling a child's log: no event to wait on across processes
        code = flush()
        with open(log, encoding="utf-8", errors="replace") as f:
            if re.search(r"Not Found|not found: try", f.read()):
                code = code or 1  # curl -s exits 0 on an HTTP error; the page must answer
        # Every service must still be running: one that died after becoming ready failed.
        for p, service_log in started:
            if p.poll() is not None:
                with open(log, "a") as out:
                    out.write(f"service exited early ({p.returncode}): see {service_log}\n")
                code = code or 1
        return code
    finally:
        for p, service_log in started:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
            with open(log, "a") as out, open(service_log, encoding="utf-8", errors="replace") as s:
                out.write(f"--- {service_log}\n{s.read()}")


def key_files(work):
    """Paths `git status` shows as new or changed whose content is a private key."""
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=work, check=True,
                            capture_output=True, text=True).stdout
    found = []
    for line in status.splitlines():
        path = os.path.join(work, line[3:].strip().strip('"'))
        if os.path.isfile(path):
            with open(path, "rb") as f:
                if b"PRIVATE KEY" in f.read(1 << 20):
                    found.append(line[3:])
    return found


def in_private_network():
    """Re-runs this script in a new network namespace (loopback up) when possible; returns False if not possible."""
    if os.environ.get("DOC_COMMANDS_NETNS") or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    flags = ["-n"] if probe.returncode == 0 else ["-rn"]
    if probe.returncode != 0 and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode != 0:
        return False
    cmd = ["unshare", *flags, "bash", "-c", 'ip link set lo up 2>/dev/null || true; exec "$@"', "_",
           sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
    os.execvpe("unshare", cmd, dict(os.environ, DOC_COMMANDS_NETNS="1"))
    return True


def main():
    listing = "--list" in sys.argv
    units = extract()
    only = os.environ.get("DOC_COMMANDS_ONLY")  # e.g. DOC_COMMANDS_ONLY=transport: only files whose path matches
    if only:
        units = [u for u in units if re.search(only, u["file"])]
    if listing:
        for u in units:
            tag = u["marker"][0] if u["marker"] else "as written"
            for c in u["commands"]:
                print(f"{u['file']}:{u['line']} [{tag}] {c}")
        return 0
    in_private_network()
    subprocess.run(["bash", os.path.join(ROOT, "scripts/fleetlearn"), "--version"], check=True, stdout=subprocess.DEVNULL)
    work = scratch_copy()
    logs = os.path.join(work, ".doc-commands-logs")
    os.makedirs(logs)
    with open(os.path.join(work, ".git", "info", "exclude"), "a") as f:
        f.write(".doc-commands-logs/\n")
    failed, ran, skipped = [], 0, []
    started = time.monotonic()
    for n, u in enumerate(units):
        kind, arg = u["marker"] if u["marker"] else (None, None)
        where = f"{u['file']}:{u['line']}"
        if kind == "skip":
            skipped.append(f"{where}: {arg}")
            continue
        log = os.path.join(logs, f"{n:03d}.log")
        if kind == "services":
            begun = time.monotonic()
            code = run_services(u["commands"][0], work, log)
            seconds = time.monotonic() - begun
            ran += 1
            results = [(u["commands"][0], code, seconds)]
        else:
            results = []
            for c in u["commands"]:
                command = apply_long(c, arg, u) if kind == "long" else c
                with open(log, "a") as out:
                    out.write(f"$ {command}\n")
                code, seconds = run_shell(command + "\n", work, log)
                ran += 1
                results.append((command, code, seconds))
                if code != 0:
                    break
        for command, code, seconds in results:
            first = command.strip().split("\n")[0][:110]
            print(f"{'ok  ' if code == 0 else 'FAIL'} {where} ({seconds:.0f} s{', shortened' if kind == 'long' else ''}) {first}", flush=True)
            if code != 0:
                failed.append(where)
                with open(log, encoding="utf-8", errors="replace") as f:
                    tail = f.read()[-3000:]
                print("     " + tail.replace("\n", "\n     "), flush=True)
    keys = key_files(work)
    for k in keys:
        print(f"FAIL git status in the copy shows a private key not ignored: {k}")
    print(f"doc commands: {ran} ran, {len(failed)} failed, {len(skipped)} skipped ({time.monotonic() - started:.0f} s)")
    for s in skipped:
        print(f"  skipped {s}")
    if "--keep" in sys.argv:
        print(f"scratch copy kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed or keys else 0


if __name__ == "__main__":
    sys.exit(main())
