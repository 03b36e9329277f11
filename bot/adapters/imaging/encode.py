"""Encoding without metadata, and fitting an image under a byte limit.

The smallest change that fits wins: optimised PNG, then a lossy quality ladder (whose
starting rung is estimated from a small mosaic of crops), and only as a last resort fewer
pixels.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from PIL import Image

from bot.adapters.imaging.colour import _has_real_alpha, _scaled, _shrink_to
from bot.adapters.imaging.formats import ImageError, _fmt_limit

_WEBP_MAX_SIDE = 16383

# Lossy quality ladders, best first. Which rung to start on is estimated by encoding a small
# mosaic of crops (same noise and detail per pixel as the whole image) instead of the whole
# 16 MP image at every rung: a full 4K WebP encode takes ~1.5 s, a mosaic encode ~20 ms.
_JPEG_LADDER: tuple[int, ...] = (92, 85, 75, 65, 55, 45)
_WEBP_LADDER: tuple[int, ...] = (90, 80, 70, 60, 50, 40)
_SAMPLE_TILE = 128  # a multiple of JPEG's 16 px MCU and WebP's 16 px macroblock: no seams
_SAMPLE_GRID = 4  # 4x4 crops spread over the image
_ESTIMATE_MARGIN = 0.95  # start on a rung whose estimate is at most 95% of the limit
_JPEG_DOWNSCALE_QUALITY = 80
_WEBP_DOWNSCALE_QUALITY = 75


_BIG_PIXELS = 4_200_000  # about 2K x 2K


def _webp_method(pixels: int) -> int:
    # 4 is libwebp's default; 2 is ~2x faster at a similar size on big images.
    return 4 if pixels <= _BIG_PIXELS else 2


def _encode(
    im: Image.Image,
    fmt: str,
    quality: int | None = None,
    *,
    icc: bytes | None = None,
    webp_method: int | None = None,
) -> bytes:
    """Encode with no metadata but the colour profile we were told to keep."""
    im.info = {}  # PNG and WebP would otherwise copy EXIF, text chunks, ICC from the source
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if fmt == "JPEG":
        # Huffman optimisation saves ~6 % of a 4K JPEG but costs a second pass (2.5x the
        # encode time); big images skip it, since every result waits for its fitting.
        options.update(quality=quality or 90, optimize=im.width * im.height <= _BIG_PIXELS)
    elif fmt == "WEBP":
        method = webp_method if webp_method is not None else _webp_method(im.width * im.height)
        options.update(quality=quality or 90, method=method)
    elif fmt == "PNG" and quality == 0:  # "optimised PNG"
        options.update(optimize=True)
    with _encode_target() as out:
        im.save(out, format=fmt, **options)
        out.seek(0)
        return out.read()


def _encode_target() -> IO[bytes]:
    """Where to encode: an in-memory file with a real descriptor where the OS offers one
    (Linux memfd). Pillow then encodes straight to the descriptor without holding the GIL;
    into a BytesIO it holds it through each encoder call (a whole 4K JPEG, ~0.1 s), which
    stalls the bot's event loop while a result is being fitted."""
    if hasattr(os, "memfd_create"):
        try:
            return open(os.memfd_create("nb-encode"), "w+b")
        except OSError:
            pass
    return io.BytesIO()


@dataclass(frozen=True)
class _Encoded:
    data: bytes
    fmt: str
    quality: int | None
    size: tuple[int, int]

    @property
    def label(self) -> str:
        name = {"JPEG": "JPEG", "WEBP": "WebP", "PNG": "PNG"}[self.fmt]
        return f"{name} q{self.quality}" if self.quality else f"optimised {name}"


def _sample_mosaic(im: Image.Image) -> Image.Image | None:
    """A 4x4 mosaic of crops spread over the image, or None when the image is small enough
    that encoding it whole is as cheap as estimating."""
    tile, grid = _SAMPLE_TILE, _SAMPLE_GRID
    if im.width < tile * grid * 2 or im.height < tile * grid * 2:
        return None
    mosaic = Image.new(im.mode, (tile * grid, tile * grid))
    for row in range(grid):
        for col in range(grid):
            x = round((col + 0.5) * im.width / grid - tile / 2)
            y = round((row + 0.5) * im.height / grid - tile / 2)
            mosaic.paste(im.crop((x, y, x + tile, y + tile)), (col * tile, row * tile))
    return mosaic


class _SizeEstimator:
    """Estimated encoded size of the whole image at a quality, from its sample mosaic."""

    def __init__(self, im: Image.Image, fmt: str, icc: bytes | None) -> None:
        self._mosaic = _sample_mosaic(im)
        self._scale = (
            im.width * im.height / (self._mosaic.width * self._mosaic.height)
            if self._mosaic is not None
            else 1.0
        )
        self._fmt = fmt
        self.icc = icc
        self._cache: dict[int, float] = {}

    @property
    def available(self) -> bool:
        return self._mosaic is not None

    def __call__(self, quality: int) -> float:
        if self._mosaic is None:
            raise RuntimeError("no mosaic for a small image")
        if quality not in self._cache:
            # WebP: the sample keeps libwebp's default method even when the whole image uses
            # the faster one; measured, that predicts the whole within ~5%, the same method
            # on a small sample overestimates ~1.5x.
            sample = _encode(self._mosaic, self._fmt, quality, icc=self.icc, webp_method=4)
            self._cache[quality] = len(sample) * self._scale
        return self._cache[quality]


def _lossy_ladder(
    im: Image.Image, fmt: str, limit: int, estimate: _SizeEstimator
) -> tuple[_Encoded | None, float]:
    """Encode down a quality ladder until one fits. Returns it (or None) and an estimate of
    the full-resolution size at the downscale quality, for the last resort."""
    ladder = _JPEG_LADDER if fmt == "JPEG" else _WEBP_LADDER
    downscale_quality = _JPEG_DOWNSCALE_QUALITY if fmt == "JPEG" else _WEBP_DOWNSCALE_QUALITY
    rungs: Sequence[int] = ladder
    if estimate.available:
        # Start on the best rung the estimate says fits; give up early on hopeless cases.
        start = next(
            (i for i, q in enumerate(ladder) if estimate(q) <= limit * _ESTIMATE_MARGIN),
            None,
        )
        if start is None and estimate(ladder[-1]) > limit * 1.25:
            return None, estimate(downscale_quality)
        rungs = ladder[start if start is not None else len(ladder) - 1 :]
    first_size: float | None = None
    for quality in rungs:
        data = _encode(im, fmt, quality, icc=estimate.icc)
        if len(data) <= limit:
            return _Encoded(data, fmt, quality, im.size), 0.0
        if first_size is None:
            first_size = len(data) * (0.6 if quality == ladder[0] else 1.0)
    if estimate.available:
        return None, estimate(downscale_quality)
    return None, first_size or float(limit) * 2


def _encode_to_fit(im: Image.Image, limit: int, *, try_png: bool, icc: bytes | None) -> _Encoded:
    """Smallest change that fits: optimised PNG, a lossy quality ladder, then (last) downscale."""
    alpha = _has_real_alpha(im)
    if try_png:
        data = _encode(im, "PNG", 0, icc=icc)
        if len(data) <= limit:
            return _Encoded(data, "PNG", None, im.size)
    # JPEG for opaque images (fast, small); WebP keeps transparency.
    fmt = "WEBP" if alpha else "JPEG"
    if alpha and max(im.size) > _WEBP_MAX_SIDE:
        im = _shrink_to(im, _WEBP_MAX_SIDE)
    fitted, estimate = _lossy_ladder(im, fmt, limit, _SizeEstimator(im, fmt, icc))
    if fitted is not None:
        return fitted
    # Last resort: fewer pixels at a decent quality, scaled by how far we overshoot. Pixel
    # detail changes with scale, so the estimate is refined with each measured encode.
    quality = _WEBP_DOWNSCALE_QUALITY if alpha else _JPEG_DOWNSCALE_QUALITY
    too_big = 1.0  # the smallest scale known not to fit
    factor = min(0.9, math.sqrt(limit / estimate) * 0.95)
    best: _Encoded | None = None
    for _ in range(12):
        size = _scaled(im.size, factor)
        if max(size) < 16:
            break
        small = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        data = _encode(small, fmt, quality, icc=icc)
        if len(data) <= limit:
            if best is not None or len(data) >= limit * 0.8:
                return _Encoded(data, fmt, quality, size)
            # Far under the limit: one step back up, never past a scale that failed.
            best = _Encoded(data, fmt, quality, size)
            factor = min(factor * math.sqrt(limit * 0.95 / len(data)), (factor + too_big) / 2)
            continue
        if best is not None:
            return best
        too_big = factor
        factor *= min(0.9, math.sqrt(limit / len(data)) * 0.95)
    if best is not None:
        return best
    raise ImageError(f"This image cannot be made to fit in {_fmt_limit(limit)}.")
