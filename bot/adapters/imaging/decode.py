"""Opening and decoding hostile bytes safely.

The format is sniffed first and only that plugin may read the file; the pixel count is
checked from the header (against a limit given per call) before anything is decoded; a
truncated file is an error rather than a half-grey picture. HEIF support is registered
lazily, the first time a HEIC file shows up.
"""

from __future__ import annotations

import io
import threading

from PIL import Image, ImageOps

from bot.adapters.imaging.formats import ImageError, _fmt_mp, _not_an_image, _subject, sniff_format

# The model's own output is trusted more than a user's upload, but still bounded.
_OUTBOUND_MAX_PIXELS = 100_000_000

_HEIF_LOCK = threading.Lock()
_heif_registered = False


def _ensure_heif_opener() -> None:
    """Register pillow-heif's opener with Pillow once, the first time a HEIC file shows up."""
    global _heif_registered
    if _heif_registered:
        return
    with _HEIF_LOCK:
        if _heif_registered:
            return
        try:
            from pillow_heif import register_heif_opener
        except ImportError as exc:  # an install without pillow-heif
            raise ImageError("HEIC images are not supported here; send a PNG or JPEG.") from exc
        register_heif_opener()
        _heif_registered = True


def _open(data: bytes, filename: str, max_pixels: int) -> tuple[Image.Image, str]:
    """Open lazily (header only) and check the pixel count before anything is decoded."""
    fmt = sniff_format(data)
    if fmt is None:
        raise _not_an_image(data, filename)
    if fmt == "HEIF":
        _ensure_heif_opener()
    who = _subject(filename)
    try:
        # Only the sniffed plugin may read it: no guessing by other decoders.
        im = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{who} has too many pixels to open safely; the limit is "
            f"{_fmt_mp(max_pixels)} megapixels."
        ) from exc
    except Exception as exc:  # hostile bytes raise all sorts; the user needs one answer
        raise ImageError(f"{who} looks damaged or incomplete; export it again.") from exc
    width, height = im.size
    if width < 1 or height < 1:
        raise ImageError(f"{who} has no pixels.")
    if width * height > max_pixels:
        raise ImageError(
            f"{who} is {width}×{height} pixels ({_fmt_mp(width * height)} MP); "
            f"the limit is {_fmt_mp(max_pixels)} megapixels."
        )
    return im, fmt


def _load(im: Image.Image, filename: str) -> None:
    """Decode the (first frame's) pixels; truncation is an error, never a grey-filled image."""
    try:
        im.seek(0)
        im.load()
    except Exception as exc:  # OSError "image file is truncated", SyntaxError, struct errors…
        raise ImageError(
            f"{_subject(filename)} looks damaged or incomplete; export it again."
        ) from exc


def _upright(im: Image.Image, *, copy: bool = True) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the image as stored.
    With copy=False an image that needs no turning comes back as itself, not a copy."""
    try:
        if not copy and im.getexif().get(0x0112, 1) == 1:
            return im
        return ImageOps.exif_transpose(im)
    except Exception:
        return im


def _display_size(im: Image.Image) -> tuple[int, int]:
    """Width and height as displayed (EXIF orientations 5–8 swap them)."""
    width, height = im.size
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:
        orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) as displayed, read from the header without decoding the pixels."""
    im, _ = _open(data, "", _OUTBOUND_MAX_PIXELS)
    with im:
        if im.format == "PNG" and not _png_has_exif(data):
            # Pillow looks for an eXIf chunk after the pixels by decoding them all (~20 ms
            # at 1K, far more at 4K); the chunk headers alone say there is none.
            return im.size
        return _display_size(im)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_has_exif(data: bytes) -> bool:
    """Whether a PNG has an eXIf chunk anywhere, from its chunk headers (a truncated file:
    True, so the caller asks Pillow)."""
    if not data.startswith(_PNG_SIGNATURE):
        return True
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"eXIf":
            return True
        if kind == b"IEND":
            return False
        pos += 12 + length  # length, type, data, CRC
    return True
