"""Benchmark: fit a noisy 4096x4096 PNG into Discord's default 10 MiB upload limit.

Not a test. Run from the repository root:

    .venv/bin/python -m tests.bench.fit_4k [--runs 5] [--limit-mib 10] [--alpha]

Prints, per input, the median and best wall time of `bot.imaging.fit_to_limit` (decode, size
estimate, encodes) and what came out. "uniform noise" is the worst case for any codec;
"photo-like" is a gradient under Gaussian noise, closer to a real 4K render.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bot` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import PIL
from PIL import Image

from bot.adapters.imaging import fit_to_limit

SIDE = 4096
MIB = 1024 * 1024


def _png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, format="PNG", compress_level=1)  # how a fast exporter writes it
    return out.getvalue()


def uniform_noise() -> Image.Image:
    return Image.frombytes("RGB", (SIDE, SIDE), os.urandom(SIDE * SIDE * 3))


def photo_like() -> Image.Image:
    gradient = Image.linear_gradient("L").resize((SIDE, SIDE))
    base = Image.merge("RGB", (gradient, gradient.rotate(90), gradient.rotate(180)))
    grain = Image.merge("RGB", [Image.effect_noise((SIDE, SIDE), 48) for _ in range(3)])
    return Image.blend(base, grain, 0.35)


def transparent_noise() -> Image.Image:
    im = uniform_noise()
    im.putalpha(Image.linear_gradient("L").resize((SIDE, SIDE)))
    return im


def bench(name: str, make: Callable[[], Image.Image], runs: int, limit: int) -> None:
    data = _png(make())
    times: list[float] = []
    fitted = None
    for _ in range(runs):
        start = time.perf_counter()
        fitted = fit_to_limit(data, "image/png", limit_bytes=limit)
        times.append(time.perf_counter() - start)
    assert fitted is not None
    print(
        f"{name:<22} in {len(data) / MIB:5.1f} MiB PNG -> "
        f"median {statistics.median(times):.2f} s (best {min(times):.2f} s, {runs} runs); "
        f"out {len(fitted.data) / MIB:.2f} MiB {fitted.mime_type} "
        f"{fitted.width}x{fitted.height}: {fitted.note or 'unchanged'}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--limit-mib", type=float, default=10.0)
    parser.add_argument("--alpha", action="store_true", help="also a transparent 4K (WebP path)")
    args = parser.parse_args(argv)
    limit = int(args.limit_mib * MIB)
    print(
        f"fit_to_limit, {SIDE}x{SIDE} -> {args.limit_mib:g} MiB | Python "
        f"{platform.python_version()}, Pillow {PIL.__version__}, {os.cpu_count()} CPUs, "
        f"{platform.machine()}"
    )
    bench("uniform noise (RGB)", uniform_noise, args.runs, limit)
    bench("photo-like (RGB)", photo_like, args.runs, limit)
    if args.alpha:
        bench("uniform noise (RGBA)", transparent_noise, args.runs, limit)


if __name__ == "__main__":
    main()
