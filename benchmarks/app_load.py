"""Load test of the running app: N users × R requests mixing every tab, through ``gradio_client``.

    .venv/bin/python benchmarks/app_load.py                         # starts app.py itself, 8 users × 20 requests
    .venv/bin/python benchmarks/app_load.py --url http://127.0.0.1:7860/ --users 8 --requests 20
    .venv/bin/python benchmarks/app_load.py --think 5               # each user reads a result ~5 s before the next click
    .venv/bin/python benchmarks/app_load.py --users 0 --memory 500  # only: RSS over 500 sequential requests

Each user is a thread with its own client; its requests cycle through tokenize, compress (a learned codec at
256 px), inpaint and a chat question, on artworks of the catalog. Prints every failure with its error, the
latency p50/p95/max per kind and overall, and the app process's resident memory (RSS) before and after.
A chat answer streams, so it is timed twice: ``chat-first`` is the wait until its first words appear (what a
visitor waits for), ``chat`` until the answer is complete (the embedded 135M model writes ~12 tokens/s and
answers one visitor at a time, so concurrent questions queue).
``--think S``: after each result a user pauses for an exponentially distributed time of mean S seconds
(seeded), as a presenter does; ``--think 0`` (default) is a saturation test: eight users clicking without pause.
Targets (issue "board-ready app"): zero failures, p95 ≤ 3 s on the 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("tokenize", "compress", "inpaint", "chat")
TIMED = ("tokenize", "compress", "inpaint", "chat-first", "chat")
QUESTIONS = ["What colours dominate this painting?", "Who painted this?", "Is this picture bright or dark?",
             "How much is it worth?"]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_app(llm: str | None) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(Path(tempfile.mkdtemp()) / "app.log", "w")
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port)] + (["--llm", llm] if llm else [])
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app exited: see {log.name}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("app did not start in 240 s")


def one_request(client, kind: str, image: str, k: int) -> float | None:
    """Send one request and wait for its result; for a chat, return the seconds until its first words."""
    from gradio_client import handle_file

    t0 = time.perf_counter()
    if kind == "tokenize":
        out = client.predict(handle_file(image), "lloyd-patch-k1024", 256, 4096, 200, api_name="/tokenize")
        assert "tokens" in out[0], out[0]
    elif kind == "compress":
        from museumtok.app.compress import codec_choices

        out = client.predict(handle_file(image), codec_choices()[0], 256, api_name="/compress")
        assert out[1] is not None, out[0]
    elif kind == "inpaint":
        out = client.predict(handle_file(image), 0.25, 0.25, 0.75, 0.75, 4, 1.0, k, api_name="/inpaint")
        assert "masked" in out[0], out[0]
    else:
        job = client.submit(QUESTIONS[k % len(QUESTIONS)], [], 2048, handle_file(image), "lloyd-patch-k1024", 64,
                            True, api_name="/chat_ask")
        first, out = None, None
        for out in job:                                  # the streamed updates, as the page receives them
            chat = out[0] if isinstance(out, (list, tuple)) else None
            if first is None and chat and chat[-1].get("role") == "assistant" and chat[-1].get("content"):
                first = time.perf_counter() - t0
        out = job.result()
        assert out[0] and out[0][-1]["content"], out        # the API leaves the session State out: [0] is the chat
        return first if first is not None else time.perf_counter() - t0
    return None


def run_load(url: str, users: int, requests: int, images: list[str], think: float = 0.0,
             progress: int = 0) -> dict:
    from gradio_client import Client

    lat: dict[str, list[float]] = {k: [] for k in TIMED}
    failures: list[str] = []
    lock = threading.Lock()

    def user(u: int):
        client = Client(url, verbose=False)
        rng = random.Random(u)
        for r in range(requests):
            if think > 0 and r > 0:
                time.sleep(rng.expovariate(1.0 / think))
            kind = KINDS[(u + r) % len(KINDS)]
            t0 = time.perf_counter()
            try:
                first = one_request(client, kind, images[(u * 7 + r) % len(images)], r)
                with lock:
                    lat[kind].append(time.perf_counter() - t0)
                    if first is not None:
                        lat["chat-first"].append(first)
                    if progress and (r + 1) % progress == 0:
                        print(f"  user {u}: {r + 1} requests", flush=True)
            except Exception as e:  # noqa: BLE001 — a failure is a result here
                with lock:
                    failures.append(f"user {u} request {r} ({kind}): {type(e).__name__}: {e}"[:400])
                    if os.environ.get("APP_LOAD_TRACE"):
                        traceback.print_exc()

    threads = [threading.Thread(target=user, args=(u,)) for u in range(users)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    every = sorted(x for k, v in lat.items() if k != "chat-first" for x in v)

    def q(xs, p):
        return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))] if xs else float("nan")

    return {"users": users, "requests_per_user": requests, "failures": failures, "wall_s": round(wall, 1),
            "overall": {"n": len(every), "p50_s": round(q(every, .5), 2), "p95_s": round(q(every, .95), 2),
                        "max_s": round(every[-1], 2) if every else None},
            "by_kind": {k: {"n": len(v), "p50_s": round(q(sorted(v), .5), 2), "p95_s": round(q(sorted(v), .95), 2)}
                        for k, v in lat.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default=None, help="a running app (default: start app.py on a free port)")
    p.add_argument("--users", type=int, default=8, help="concurrent users (0: skip the load run)")
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--think", type=float, default=0.0,
                   help="mean pause in seconds between one user's requests (0: no pause, a saturation test)")
    p.add_argument("--memory", type=int, default=0, help="also: RSS before/after this many sequential requests")
    p.add_argument("--llm", default=None, help="backend for a started app (default: the embedded SmolLM2)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)

    from museumtok.data.catalog import load_catalog

    images = [str(e.find()) for e in load_catalog(collection="artworks")[:12]]
    proc, url = (None, a.url) if a.url else start_app(a.llm)
    try:
        if proc is not None:                          # let the background start-up finish (LLM, adapters, index)
            from gradio_client import Client

            Client(url, verbose=False).predict("Hello", [], 2048, api_name="/chat_ask")
        rss0 = rss_mb(proc.pid) if proc else None
        res = (run_load(url, a.users, a.requests, images, think=a.think) if a.users > 0 else
               {"users": 0, "failures": [], "wall_s": 0, "by_kind": {}, "overall": {}})
        res["think_s"] = a.think
        res["rss_mb_before"], res["rss_mb_after"] = rss0, (rss_mb(proc.pid) if proc else None)
        if a.memory:
            before = rss_mb(proc.pid) if proc else None
            samples = [before]
            done = 0
            failures = 0
            while done < a.memory:                 # in chunks of 50, with the RSS after each
                n = min(50, a.memory - done)
                mem = run_load(url, 1, n, images[done % len(images):] + images[:done % len(images)])
                failures += len(mem["failures"])
                done += n
                samples.append(rss_mb(proc.pid) if proc else None)
                print(f"  memory: {done}/{a.memory} requests, RSS {samples[-1]} MB, {failures} failures", flush=True)
            res["memory"] = {"requests": a.memory, "rss_mb_before": before, "rss_mb_samples": samples,
                             "rss_mb_after": samples[-1], "failures": failures}
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    if a.users > 0:
        print(f"{a.users} users × {a.requests} requests (think {a.think} s) in {res['wall_s']} s: "
              f"{len(res['failures'])} failures; p50 {res['overall']['p50_s']} s, p95 {res['overall']['p95_s']} s, "
              f"max {res['overall']['max_s']} s (chat counted to its complete answer)")
        for k, v in res["by_kind"].items():
            print(f"  {k:10s} n={v['n']:3d}  p50 {v['p50_s']} s  p95 {v['p95_s']} s")
    if res.get("rss_mb_before") is not None:
        print(f"  app RSS {res['rss_mb_before']:.0f} MB before, {res['rss_mb_after']:.0f} MB after")
    if "memory" in res:
        m = res["memory"]
        print(f"  memory: {m['requests']} sequential requests: RSS {m['rss_mb_before']:.0f} → {m['rss_mb_after']:.0f} MB "
              f"({m['failures']} failures)")
    for f in res["failures"]:
        print("  FAIL", f)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    return 0 if not res["failures"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
