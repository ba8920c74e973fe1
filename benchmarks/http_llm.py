"""Our HTTP client against a real OpenAI-compatible server, beside the official ``openai`` client.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/http_llm.py                  # starts `transformers serve` itself
    .venv/bin/python benchmarks/http_llm.py --url http://gpu-host:8000/v1      # a server that is already running
    .venv/bin/python benchmarks/http_llm.py --M 16 64 256 --repeats 5 --json out.json

For each image-token count M: one chat turn (system prompt, an image's M tokens as text, a question) sent
``repeats`` times, streamed, at temperature 0, alternately through ``museumtok.llm.backends.HTTPBackend`` and
``openai.OpenAI``; prints the prompt tokens the server counted, and the median time to first token (TTFT)
and to the last token for each client. Both talk to the same server, so the two columns differ only by
the client; the absolute numbers are the server's (here: SmolLM2-135M on the CPU, no prefix cache).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from museumtok import registry  # noqa: E402
from museumtok.llm.backends import HTTPBackend, convert_embedded  # noqa: E402
from museumtok.llm.chat import ChatSession  # noqa: E402
from museumtok.llm.serve import ExternalServer  # noqa: E402

QUESTION = "Describe this painting in one sentence."


def turn_messages(tokenizer: str, M: int) -> list[dict]:
    """The messages of one chat turn about a random image at M tokens (what the app would send)."""
    tok = registry.load(tokenizer)
    s = ChatSession(HTTPBackend("http://127.0.0.1:9/v1", model="x"), guard=False, check=False)
    s.set_image(tok, torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)), M=M, warm=False)
    return s.messages_for(QUESTION, s.plan(QUESTION))


def ours(backend: HTTPBackend, msgs, n: int) -> dict:
    t0 = time.perf_counter()
    text = "".join(backend.stream(msgs, max_new_tokens=n))
    st = backend.last_stats
    return {"ttft_s": st["ttft_s"], "total_s": time.perf_counter() - t0, "prompt_tokens": st["prompt_tokens"],
            "new_tokens": st["new_tokens"], "text": text}


def theirs(client, model: str, msgs, n: int) -> dict:
    t0, ttft, parts, usage = time.perf_counter(), None, [], None
    for chunk in client.chat.completions.create(model=model, messages=msgs, max_completion_tokens=n, temperature=0,
                                                stream=True, stream_options={"include_usage": True}):
        usage = chunk.usage or usage
        for c in chunk.choices:
            if c.delta.content:
                ttft = ttft if ttft is not None else time.perf_counter() - t0
                parts.append(c.delta.content)
    return {"ttft_s": ttft, "total_s": time.perf_counter() - t0, "prompt_tokens": usage.prompt_tokens if usage else None,
            "new_tokens": usage.completion_tokens if usage else None, "text": "".join(parts)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=None, help="an OpenAI-compatible /v1 URL (default: start transformers serve)")
    p.add_argument("--model", default=None, help="model name (default: the first of /v1/models)")
    p.add_argument("--M", type=int, nargs="+", default=[16, 64])
    p.add_argument("--tokenizer", default="anym-k1000", help="a tokenizer that can make every M asked")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")),
                   help="CPU threads of the transformers serve it starts")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    import openai

    srv = None
    if a.url is None:
        srv = ExternalServer.transformers(convert_embedded(), threads=a.threads).start()
        print(f"transformers serve ready in {srv.ready_s:.1f} s on {srv.url}", flush=True)
    url = a.url or srv.url
    try:
        backend = HTTPBackend(url, model=a.model)
        model = backend.resolve_model()
        client = openai.OpenAI(base_url=url, api_key=os.environ.get("MUSEUMTOK_LLM_API_KEY") or "unused", max_retries=0)
        rows = []
        for M in a.M:
            msgs = turn_messages(a.tokenizer, M)
            ours(backend, msgs, a.max_new_tokens)                      # warm-up (first call after loading)
            runs = {"ours": [], "openai": []}
            for _ in range(a.repeats):
                runs["ours"].append(ours(backend, msgs, a.max_new_tokens))
                runs["openai"].append(theirs(client, model, msgs, a.max_new_tokens))
            same = all(r["text"] == runs["ours"][0]["text"] for r in runs["ours"] + runs["openai"])
            row = {"M": M, "prompt_tokens": runs["ours"][0]["prompt_tokens"], "new_tokens": runs["ours"][0]["new_tokens"],
                   "same_text": same}
            for k, rs in runs.items():
                row[f"{k}_ttft_s"] = statistics.median(r["ttft_s"] for r in rs)
                row[f"{k}_total_s"] = statistics.median(r["total_s"] for r in rs)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if srv is not None:
            srv.stop()
    print(f"\nserver: {url} ({model}); {a.repeats} repeats, median; {a.max_new_tokens} new tokens at most\n")
    print("| M | prompt tokens | new tokens | TTFT ours (s) | TTFT openai (s) | total ours (s) | total openai (s) | same text |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['M']} | {r['prompt_tokens']} | {r['new_tokens']} | {r['ours_ttft_s']:.2f} | {r['openai_ttft_s']:.2f} "
              f"| {r['ours_total_s']:.2f} | {r['openai_total_s']:.2f} | {'yes' if r['same_text'] else 'NO'} |")
    if a.json:
        a.json.write_text(json.dumps({"url": url, "model": model, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
