"""``make stress``: the local pool under load, measured; prints the table docs/reliability.md records.

Not part of ``make test`` (it takes a few minutes and its numbers depend on the machine). Every pool it starts
is private, on loopback, and stopped at the end. Scenarios:

1. 16 sessions x 50 cells, all submitted at once: each cell prints a unique token and appends it to a log in
   its session; every token must come back exactly once in its reply and in its log (p50/p95 latency).
2. 50 uploads in parallel (1-8 MiB each), downloaded again and compared by SHA-256.
3. 60 and 120 sessions under ``ulimit -n 1024``: those the descriptor budget admits work, the others are
   refused with the service's error, and the admitted ones keep working; no "Too many open files" anywhere.
4. Pool memory: its resident size at rest, at the peak of scenario 1, and after those sessions expired.

Exit status 0 when every check held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

V1, V2 = "2024-02-02-preview", "2025-10-02-preview"


@dataclass
class Pool:
    proc: subprocess.Popen
    endpoint: str
    token: str
    data: str
    log: list[str] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.endpoint + "/", headers={"Authorization": f"Bearer {self.token}"},
                            timeout=300, limits=httpx.Limits(max_connections=100))

    def rss_mb(self) -> float:
        return _status(self.proc.pid, "VmRSS")

    def peak_mb(self) -> float:
        return _status(self.proc.pid, "VmHWM")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.rmdir(self.data)  # the pool removed what it put there


def _status(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_pool(*args: str, open_files: int | None = None) -> Pool:
    token = secrets.token_hex(16)
    data = tempfile.mkdtemp(prefix="aca-stress-")
    cmd = [sys.executable, "-m", "aca_kernel.emulator", "--port", "0", "--token", token, "--data-dir", data, *args]

    def limit() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=limit)
    assert proc.stdout is not None
    log: list[str] = []
    for line in proc.stdout:
        log.append(line)
        if line.startswith("pool endpoint: "):
            pool = Pool(proc, line.split(": ", 1)[1].strip(), token, data, log)
            threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
            return pool
    raise RuntimeError("the pool did not start:\n" + "".join(log))


def execute(http: httpx.Client, ident: str, code: str) -> dict:
    r = http.post("code/execute", params={"api-version": V1, "identifier": ident},
                  json={"properties": {"code": code}})
    r.raise_for_status()
    return r.json()["properties"]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


# -- scenarios -----------------------------------------------------------------------------------------------

def cells(sessions: int, per_session: int) -> tuple[dict, float]:
    pool = start_pool("--ready", "2", "--cooldown", "20", "--max-sessions", str(sessions + 5))
    try:
        with pool.client() as http:
            idents = [str(uuid.uuid4()) for _ in range(sessions)]
            base = pool.rss_mb()
            jobs = [(ident, f"{i}-{secrets.token_hex(6)}") for ident in idents for i in range(per_session)]
            latencies: list[float] = []
            bad: list[str] = []

            def one(job: tuple[str, str]) -> None:
                ident, token = job
                started = time.monotonic()
                props = execute(http, ident, f"print({token!r})\nopen('/mnt/data/log.txt', 'a').write({token!r} + '\\n')")
                latencies.append((time.monotonic() - started) * 1000)
                if props["status"] != "Success" or props["stdout"] != token + "\n":
                    bad.append(f"{token}: {props['status']} {props['stdout']!r} {props['stderr'][:200]!r}")

            t0 = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(64) as ex:
                list(ex.map(one, jobs))
            wall = time.monotonic() - t0
            lost = duplicated = 0
            for ident in idents:
                logged = http.get("files/content/log.txt", params={"api-version": V1, "identifier": ident}).text.split()
                mine = [t for i, t in jobs if i == ident]
                lost += sum(1 for t in mine if t not in logged)
                duplicated += len(logged) - len(set(logged))
            peak = pool.peak_mb()
            # memory once the sessions are gone (cooldown 20 s)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if http.get("listSessions", params={"api-version": V2}).json()["count"] == 0:
                    break
                time.sleep(1)
            time.sleep(2)
            after = pool.rss_mb()
        ok = not bad and lost == 0 and duplicated == 0 and len(latencies) == len(jobs)
        return {
            "cells": len(jobs), "answered": len(latencies) - len(bad), "lost": lost, "duplicated": duplicated,
            "p50_ms": statistics.median(latencies), "p95_ms": pct(latencies, 95), "wall_s": wall,
            "rss_base": base, "rss_peak": peak, "rss_after": after, "ok": ok, "bad": bad[:3],
        }, wall
    finally:
        pool.stop()


def uploads(count: int) -> dict:
    pool = start_pool("--ready", "0", "--max-sessions", str(count + 5))
    try:
        with pool.client() as http:
            files = [os.urandom(int.from_bytes(os.urandom(3), "big") % (7 << 20) + (1 << 20)) for _ in range(count)]
            idents = [str(uuid.uuid4()) for _ in range(count)]

            def up(i: int) -> bool:
                r = http.post("files", params={"api-version": V2, "identifier": idents[i]},
                              files={"file": (f"blob-{i}.bin", files[i])})
                if r.status_code != 200:
                    return False
                got = http.get(f"files/blob-{i}.bin/content", params={"api-version": V2, "identifier": idents[i]})
                return hashlib.sha256(got.content).digest() == hashlib.sha256(files[i]).digest()

            t0 = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(count) as ex:
                results = list(ex.map(up, range(count)))
            wall = time.monotonic() - t0
        total = sum(len(f) for f in files)
        return {"uploads": count, "verified": sum(results), "mib": total / (1 << 20), "wall_s": wall,
                "rss_peak": pool.peak_mb(), "ok": all(results)}
    finally:
        pool.stop()


def descriptors(sessions: int, limit: int) -> dict:
    pool = start_pool("--ready", "2", "--max-sessions", "1000", open_files=limit)
    try:
        with pool.client() as http:
            admitted, refused, other = [], 0, []
            for _ in range(sessions):
                ident = str(uuid.uuid4())
                r = http.post("code/execute", params={"api-version": V1, "identifier": ident},
                              json={"properties": {"code": "6 * 7"}})
                if r.status_code == 200 and r.json()["properties"]["result"] == 42:
                    admitted.append(ident)
                elif r.status_code == 404 and r.json()["error"]["code"] == "SessionPoolMaxSessionsReached":
                    refused += 1
                else:
                    other.append(f"{r.status_code} {r.text[:200]}")
            still = sum(1 for ident in admitted if execute(http, ident, "'ok'")["result"] == "ok")
            fds = len(os.listdir(f"/proc/{pool.proc.pid}/fd"))
        emfile = any("Too many open files" in line for line in pool.log)
        return {"asked": sessions, "admitted": len(admitted), "refused": refused, "still_working": still,
                "fds": fds, "limit": limit, "ok": not other and still == len(admitted) and not emfile,
                "other": other[:3]}
    finally:
        pool.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--uploads", type=int, default=50)
    args = parser.parse_args()

    print(f"stress: {args.sessions} sessions x {args.cells} cells ...", file=sys.stderr, flush=True)
    c, _ = cells(args.sessions, args.cells)
    print(f"stress: {args.uploads} parallel uploads ...", file=sys.stderr, flush=True)
    u = uploads(args.uploads)
    print("stress: 60 and 120 sessions under ulimit -n 1024 ...", file=sys.stderr, flush=True)
    d = descriptors(60, 1024)
    over = descriptors(120, 1024)

    def mark(ok: bool) -> str:
        return "ok" if ok else "FAILED"

    rows = [
        (f"{args.sessions} sessions x {args.cells} cells at once",
         f"{c['answered']}/{c['cells']} answered, {c['lost']} lost, {c['duplicated']} duplicated; "
         f"p50 {c['p50_ms']:.0f} ms, p95 {c['p95_ms']:.0f} ms; {c['wall_s']:.1f} s in all", mark(c["ok"])),
        (f"{args.uploads} parallel uploads (1-8 MiB)",
         f"{u['verified']}/{u['uploads']} verified by SHA-256, {u['mib']:.0f} MiB in {u['wall_s']:.1f} s; "
         f"pool peak {u['rss_peak']:.0f} MiB", mark(u["ok"])),
        ("60 sessions under ulimit -n 1024",
         f"{d['admitted']} admitted, {d['refused']} refused (SessionPoolMaxSessionsReached), "
         f"{d['still_working']}/{d['admitted']} still working; {d['fds']} descriptors open", mark(d["ok"])),
        ("120 sessions under ulimit -n 1024",
         f"{over['admitted']} admitted, {over['refused']} refused (SessionPoolMaxSessionsReached), "
         f"{over['still_working']}/{over['admitted']} still working; {over['fds']} descriptors open",
         mark(over["ok"] and over["refused"] > 0)),
        ("pool memory (resident)",
         f"{c['rss_base']:.0f} MiB at rest, {c['rss_peak']:.0f} MiB peak under load, "
         f"{c['rss_after']:.0f} MiB after the sessions expired",
         mark(c["rss_after"] <= c["rss_base"] + 40)),
    ]
    print("| scenario | result | |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")
    for problem in c["bad"] + d["other"] + over["other"]:
        print(f"  {problem}", file=sys.stderr)
    return 0 if all(row[2] == "ok" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
