"""A PNG's displayed size comes from its chunk headers, without decoding its pixels."""

from __future__ import annotations

import io

from PIL import Image

from bot.adapters.imaging import image_size
from bot.adapters.imaging.decode import _png_has_exif


def _png(size: tuple[int, int], *, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    im = Image.new("RGB", size, (10, 20, 30))
    if orientation is None:
        im.save(buf, "PNG")
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(buf, "PNG", exif=exif)
    return buf.getvalue()


def test_a_png_without_exif_is_sized_from_its_header() -> None:
    data = _png((40, 20))
    assert not _png_has_exif(data)
    assert image_size(data) == (40, 20)


def test_a_png_with_an_exif_orientation_is_still_turned() -> None:
    data = _png((40, 20), orientation=6)
    assert _png_has_exif(data)
    assert image_size(data) == (20, 40)


def test_a_truncated_png_is_left_to_pillow() -> None:
    data = _png((40, 20))
    assert _png_has_exif(data[: len(data) // 2] + b"\x00\x00")
    assert _png_has_exif(b"not a png at all")
