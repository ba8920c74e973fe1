"""Encode / decode time per Kodak image (768×512) for every bundled learned codec, against JPEG and WebP.

    python benchmarks/codec_speed.py [--limit 24] [--threads 1]

Prints the median milliseconds per image and each codec's ratio to JPEG's, side by side. Learned
decoders run g_s and h_s in float64 for reproducible bitstreams (see museumtok/codecs/learned/base.py);
the ratio shows what that determinism costs. No timing is asserted anywhere: these are measurements.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import museumtok  # noqa: E402
from museumtok.paths import fast_mode  # noqa: E402
from museumtok.eval.rd import learned_codecs, rd_images  # noqa: E402


def time_codec(codec, images, repeats: int = 1, **params) -> dict:
    enc_ms, dec_ms, bpp = [], [], []
    for _, x in images:
        for _ in range(repeats):
            t0 = time.perf_counter()
            e = codec.compress(x, **params)
            t1 = time.perf_counter()
            codec.decompress(e)
            t2 = time.perf_counter()
            enc_ms.append(1e3 * (t1 - t0))
            dec_ms.append(1e3 * (t2 - t1))
        bpp.append(e.bpp)
    return {"encode_ms": statistics.median(enc_ms), "decode_ms": statistics.median(dec_ms), "bpp": statistics.mean(bpp)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=2 if fast_mode() else 24)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = rd_images("kodak", args.limit)
    rows = {"jpeg q75": time_codec(museumtok.load("jpeg"), images, quality=75),
            "webp q75": time_codec(museumtok.load("webp"), images, quality=75)}
    for fam, names in learned_codecs().items():
        for n in sorted(names):
            rows[n] = time_codec(museumtok.load(n), images)
    base = rows["jpeg q75"]
    print(f"{len(images)} Kodak images, {args.threads} thread(s); median ms per image, ratio to JPEG q75")
    print(f"{'codec':<16}{'bpp':>7}{'encode ms':>11}{'× JPEG':>9}{'decode ms':>11}{'× JPEG':>9}")
    for name, r in rows.items():
        print(f"{name:<16}{r['bpp']:>7.3f}{r['encode_ms']:>11.1f}{r['encode_ms'] / base['encode_ms']:>9.1f}"
              f"{r['decode_ms']:>11.1f}{r['decode_ms'] / base['decode_ms']:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
