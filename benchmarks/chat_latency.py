"""Cold start and time to first token of the guide, measured on the real app (``app.py``) through
``gradio_client``, as a presenter meets them.

    python benchmarks/chat_latency.py                    # embedded SmolLM2, default chat tokenizer, M = 64
    python benchmarks/chat_latency.py --tokenizer lloyd-patch-k1024 --questions 5 --json out.json

Starts the app in a fresh process and reports, side by side:

* ``app up``: process start → the page answers (Gradio and the package imported);
* ``cold start → first answer``: process start → first streamed word of the first answer (the image is
  loaded and the question sent as soon as the page answers, while the LLM may still be loading);
* ``after the page is up``: the same, counted from the moment the page answered;
* time to first token once loaded (the backend's own measure, shown in the chat's notice) over N questions
  (median and max), at the chosen M;
* the same first-question TTFT with the image prefix not pre-filled (baseline, ``warm`` off) is in
  ``benchmarks/llm_ttft.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = ["What colours dominate this painting?", "Who painted this?", "Where does the light fall?",
             "How much is it worth?", "Describe what is in the picture.", "Is this picture bright or dark?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokenizer", default=None, help="chat tokenizer (default: the Chat tab's)")
    p.add_argument("--M", type=int, default=64)
    p.add_argument("--questions", type=int, default=5)
    p.add_argument("--llm", default=None, help="backend spec (default: the embedded SmolLM2)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)

    from gradio_client import Client, handle_file

    from museumtok.app.chat import default_chat_tokenizer
    from museumtok.data.catalog import load_catalog

    tokenizer = a.tokenizer or default_chat_tokenizer()
    image = str(load_catalog(split="test", collection="artworks")[0].find())
    port = free_port()
    log = Path(tempfile.mkdtemp()) / "app.log"
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port)] + (["--llm", a.llm] if a.llm else [])
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the app stopped:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        t_up = time.perf_counter()
        c = Client(url, verbose=False)
        c.predict(handle_file(image), tokenizer, a.M, 2048, True, api_name="/chat_load")
        job = c.submit(QUESTIONS[0], [], 2048, api_name="/chat_ask")
        t_first = None
        for out in job:
            hist = out[0] if out else []
            if hist and hist[-1].get("role") == "assistant" and str(hist[-1].get("content", "")).strip() \
                    and not str(hist[-1]["content"]).startswith("⏳"):
                t_first = time.perf_counter()
                break
        final = job.result()
        t_first = t_first or time.perf_counter()
        ttfts, answers = [], [(QUESTIONS[0], final[0][-1]["content"])]
        for q in QUESTIONS[1:a.questions + 1]:
            c.predict(handle_file(image), tokenizer, a.M, 2048, True, api_name="/chat_load")   # a fresh turn 1
            out = c.predict(q, [], 2048, api_name="/chat_ask")
            m = re.search(r"time to first token (\d+) ms", str(out[4]))
            if m:
                ttfts.append(int(m.group(1)))
            answers.append((q, out[0][-1]["content"]))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    res = {"tokenizer": tokenizer, "M": a.M, "llm": a.llm or "embedded",
           "app_up_s": round(t_up - t0, 2), "cold_start_to_first_answer_s": round(t_first - t0, 2),
           "page_up_to_first_answer_s": round(t_first - t_up, 2),
           "ttft_ms_median": statistics.median(ttfts) if ttfts else None, "ttft_ms_max": max(ttfts) if ttfts else None,
           "ttft_ms": ttfts, "answers": answers}
    print(f"tokenizer {tokenizer}, M = {a.M}, LLM {res['llm']}")
    print(f"  app up (page answers)            {res['app_up_s']:6.2f} s after the process started")
    print(f"  cold start → first answer        {res['cold_start_to_first_answer_s']:6.2f} s "
          f"({res['page_up_to_first_answer_s']:.2f} s after the page was up)")
    if ttfts:
        print(f"  time to first token, loaded      median {res['ttft_ms_median']} ms, max {res['ttft_ms_max']} ms "
              f"over {len(ttfts)} first questions")
    for q, ans in answers:
        print(f"  Q: {q}\n     {ans}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
