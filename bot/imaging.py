"""Pillow image pipeline: inbound checks and normalising, outbound fit-to-limit, contact sheets.

Every function is synchronous and pure (bytes in, bytes out). Callers in async code run them in
`asyncio.to_thread` so a 4K decode never stalls the event loop.

Inbound images are hostile until proven otherwise: the format is sniffed from the bytes (not the
file name), the pixel count is checked from the header before anything is decoded, and a
truncated file is an error rather than a half-grey picture.
"""

from __future__ import annotations

import io
import math
import os
import statistics
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from PIL import Image, ImageCms, ImageDraw, ImageFont, ImageOps

__all__ = [
    "ACCEPTED_FORMATS",
    "FittedImage",
    "ImageError",
    "InboundImage",
    "check_declared_size",
    "contact_sheet",
    "extension_for",
    "fit_to_limit",
    "image_size",
    "normalise_inbound",
    "sniff_format",
    "split_grid",
]

MIB = 1024 * 1024
ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "HEIF")
# Gemini wants one inline image under 7 MB; normalised inbound images are kept below that.
INLINE_IMAGE_BYTES = 7_000_000
# The model's own output is trusted more than a user's upload, but still bounded.
_OUTBOUND_MAX_PIXELS = 100_000_000
_WEBP_MAX_SIDE = 16383

_MIME_BY_FORMAT = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "HEIF": "image/heif",
}
_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/pjpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/heic": "heic",
    "image/heif": "heif",
}
_FORMATS_WE_POST = ("PNG", "JPEG", "WEBP")  # Discord previews these inline

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
# Optimised PNG rarely saves more than ~10%, and costs ~2 s at 4K: only worth it when close.
_PNG_RETRY_RATIO = 1.10
_PNG_RETRY_MAX_PIXELS = 8_400_000  # about 2896x2896 (a 2K output is 4.2 MP)

_HEIF_LOCK = threading.Lock()
_heif_registered = False


class ImageError(ValueError):
    """An image we cannot use; `str(e)` is one short sentence fit to show the user."""


@dataclass(frozen=True)
class InboundImage:
    data: bytes
    mime_type: str
    width: int
    height: int
    original_format: str  # "PNG", "JPEG", "WEBP", "GIF" or "HEIF"


@dataclass(frozen=True)
class FittedImage:
    data: bytes
    mime_type: str
    extension: str  # "png" | "jpg" | "webp"
    width: int
    height: int
    note: str | None  # what was done to fit, for the result embed; None when unchanged


# --------------------------------------------------------------------------------------------
# Small helpers: names, sizes, format sniffing
# --------------------------------------------------------------------------------------------


def extension_for(mime_type: str) -> str:
    """File extension (no dot) for an image MIME type; "bin" for anything unknown."""
    key = mime_type.split(";", 1)[0].strip().lower()
    return _EXTENSIONS.get(key, "bin")


def _subject(filename: str) -> str:
    """How a file is named in a message: its (shortened) name, or a neutral phrase."""
    name = " ".join(filename.split())
    if not name:
        return "That file"
    return name if len(name) <= 60 else name[:57] + "…"


def _fmt_mb(size_bytes: float) -> str:
    """Decimal megabytes, as people and Discord's client show them: 25.3 MB, 20 MB."""
    mb = size_bytes / 1_000_000
    text = f"{mb:.1f}" if mb < 100 else f"{mb:.0f}"
    return (text[:-2] if text.endswith(".0") else text) + " MB"


def _fmt_limit(limit_bytes: int) -> str:
    """An upload limit in the unit it was set in: 10 MiB, 8 MB, 512 KiB."""
    if limit_bytes >= MIB and limit_bytes % MIB == 0:
        return f"{limit_bytes // MIB} MiB"
    if limit_bytes >= 1_000_000 and limit_bytes % 100_000 == 0:
        return _fmt_mb(limit_bytes)
    if limit_bytes >= MIB:
        return f"{limit_bytes / MIB:.1f} MiB"
    return f"{max(1, round(limit_bytes / 1024))} KiB"


def _fmt_mp(pixels: float) -> str:
    mp = pixels / 1_000_000
    return f"{mp:.0f}" if mp >= 10 else f"{mp:.1f}".removesuffix(".0")


def check_declared_size(size_bytes: int, *, max_bytes: int, filename: str = "") -> None:
    """Refuse an attachment from its declared size, before downloading it."""
    who = _subject(filename)
    if size_bytes <= 0:
        raise ImageError(f"{who} is empty; attach the image again.")
    if size_bytes > max_bytes:
        raise ImageError(
            f"{who} is {_fmt_mb(size_bytes)}; the limit is {_fmt_mb(max_bytes)} — "
            "send a smaller or more compressed version."
        )


_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_GENERIC_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


def _ftyp_brands(data: bytes) -> tuple[bytes, frozenset[bytes]] | None:
    """(major brand, compatible brands) of an ISO-BMFF file (HEIF, AVIF, MP4), or None."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(data[0:4], "big")
    end = min(box_size if box_size >= 16 else 16, len(data), 256)
    compatible = frozenset(data[i : i + 4] for i in range(16, end - 3, 4))
    return data[8:12], compatible


def sniff_format(data: bytes) -> str | None:
    """The accepted image format these bytes hold ("PNG", "JPEG", "WEBP", "GIF", "HEIF"), or None.

    Decided from the magic bytes only: file names and declared MIME types lie.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    brands = _ftyp_brands(data)
    if brands is not None:
        major, compatible = brands
        if major in _AVIF_BRANDS:
            return None
        if major in _HEIF_BRANDS or compatible & _HEIF_BRANDS:
            return "HEIF"
        if major in _GENERIC_HEIF_BRANDS and not compatible & _AVIF_BRANDS:
            return "HEIF"
    return None


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or Office document"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"8BPS", "a Photoshop document"),
    (b"\x00\x00\x01\x00", "an ICO icon"),
    (b"ID3", "an MP3 audio file"),
    (b"OggS", "an Ogg audio or video file"),
    (b"\x1aE\xdf\xa3", "a WebM or MKV video"),
    (b"fLaC", "a FLAC audio file"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
)


def _describe(data: bytes) -> str:
    """What unusable bytes look like, for the error message ("a PDF document", "text")."""
    if not data:
        return "an empty file"
    brands = _ftyp_brands(data)
    if brands is not None:
        major, compatible = brands
        if major in _AVIF_BRANDS or compatible & _AVIF_BRANDS:
            return "an AVIF image"
        return "a video (MP4/MOV)"
    if data[:4] == b"RIFF":
        return "a RIFF media file (audio or video)"
    for magic, what in _SIGNATURES:
        if data.startswith(magic):
            return what
    text = _as_text(data[:4096])
    if text is None:
        return "unrecognised binary data"
    head = text.lstrip("\ufeff \t\r\n").lower()
    if head.startswith(("<!doctype html", "<html")):
        return "a web page (HTML)"
    if "<svg" in head[:1024]:
        return "an SVG drawing"
    if head.startswith("<?xml"):
        return "an XML document"
    if head.startswith(("{", "[")):
        return "JSON text"
    return "text"


def _as_text(chunk: bytes) -> str | None:
    """The chunk as text if it is mostly printable UTF-8, else None."""
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut off at the end of the chunk is still text.
        if exc.start < len(chunk) - 4:
            return None
        text = chunk[: exc.start].decode("utf-8")
    if not text:
        return None
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\t\r\n")
    return text if printable / len(text) > 0.95 else None


def _not_an_image(data: bytes, filename: str) -> ImageError:
    return ImageError(
        f"{_subject(filename)} is not an image I can use (got {_describe(data)}); "
        "send a PNG, JPEG, WEBP, GIF or HEIC image."
    )


# --------------------------------------------------------------------------------------------
# Opening and decoding
# --------------------------------------------------------------------------------------------


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


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the image as stored."""
    try:
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
        return _display_size(im)


# --------------------------------------------------------------------------------------------
# Colour modes
# --------------------------------------------------------------------------------------------


def _is_srgb(icc: bytes) -> bool:
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = profile.profile.profile_description or ""
    except Exception:
        return True  # unreadable profile: nothing better to convert from
    return "srgb" in description.lower()


def _icc_to_srgb(im: Image.Image, icc: bytes | None, out_mode: str) -> Image.Image | None:
    """Convert with the embedded ICC profile (CMYK, Display P3…) to sRGB; None if impossible."""
    if not icc:
        return None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        target = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        converted = ImageCms.profileToProfile(im, source, target, outputMode=out_mode)
    except Exception:
        return None
    return converted


def _sixteen_bit_to_l(im: Image.Image) -> Image.Image:
    # Pillow's I;16 -> L conversion clips (anything above 255 turns white); scale instead.
    return im.convert("I").point(lambda v: v * (1 / 257)).convert("L")


def _standard_mode(im: Image.Image, icc: bytes | None) -> Image.Image:
    """Any decoded mode -> L, LA, RGB or RGBA (the modes every encoder takes)."""
    mode = im.mode
    if mode in ("RGB", "L") and "transparency" in im.info:
        return im.convert("RGBA")  # a tRNS colour key: that colour is transparent
    if mode in ("RGB", "RGBA", "L", "LA"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if mode in ("PA", "RGBa", "RGBX"):
        return im.convert("RGBA" if mode != "RGBX" else "RGB")
    if mode == "La":
        return im.convert("LA")
    if mode == "CMYK":
        return _icc_to_srgb(im, icc, "RGB") or im.convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        return _sixteen_bit_to_l(im)
    if mode == "F":
        return im.point(lambda v: v * 255).convert("L")  # float images are 0..1
    return im.convert("RGBA" if "A" in im.getbands() else "RGB")


def _profile_for(source_mode: str, picture: Image.Image, icc: bytes | None) -> bytes | None:
    """The source's ICC profile if it still describes the pixels (RGB stays RGB, grey grey)."""
    if not icc:
        return None
    rgb_sources = ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA")
    if source_mode in rgb_sources and picture.mode in ("RGB", "RGBA"):
        return icc
    if source_mode in ("L", "LA", "La") and picture.mode in ("L", "LA"):
        return icc
    return None  # CMYK was converted to sRGB; 16-bit grey was rescaled


def _has_real_alpha(im: Image.Image) -> bool:
    if im.mode not in ("RGBA", "LA"):
        return False
    low = im.getchannel("A").getextrema()[0]  # a single band: (min, max)
    return isinstance(low, int | float) and low < 255


def _drop_fake_alpha(im: Image.Image) -> Image.Image:
    """An alpha channel that is opaque everywhere is not transparency: drop it."""
    if im.mode in ("RGBA", "LA") and not _has_real_alpha(im):
        return im.convert("RGB" if im.mode == "RGBA" else "L")
    return im


def _scaled(size: tuple[int, int], factor: float) -> tuple[int, int]:
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


def _shrink_to(im: Image.Image, max_side: int) -> Image.Image:
    longest = max(im.size)
    if longest <= max_side:
        return im
    # reducing_gap: a fast box reduction first, then Lanczos for the last step.
    return im.resize(
        _scaled(im.size, max_side / longest), Image.Resampling.LANCZOS, reducing_gap=3.0
    )


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _webp_method(pixels: int) -> int:
    # 4 is libwebp's default; 2 is ~2x faster at a similar size on big images.
    return 4 if pixels <= 4_200_000 else 2


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
        options.update(quality=quality or 90, optimize=True)
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


# --------------------------------------------------------------------------------------------
# Inbound
# --------------------------------------------------------------------------------------------


def normalise_inbound(
    data: bytes,
    *,
    filename: str = "",
    max_side: int = 2048,
    max_pixels: int = 64_000_000,
) -> InboundImage:
    """Check and clean a user's image: upright, sRGB, no metadata, at most `max_side` px.

    Opaque images come out as JPEG (q90), images with real transparency as PNG; either is
    kept under Gemini's inline-image size. Raises ImageError with a user-facing sentence.
    """
    if max_side < 1:
        raise ValueError("max_side must be positive")
    im, fmt = _open(data, filename, max_pixels)
    with im:
        if fmt == "JPEG" and max(im.size) > max_side:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: a 48 MP photo decodes ~10x faster.
            target = _scaled(im.size, max_side / max(im.size))
            im.draft(None, target)
        _load(im, filename)
        icc = im.info.get("icc_profile")
        picture = _upright(im)
        picture = _standard_mode(picture, icc)
        picture = _drop_fake_alpha(picture)
        picture = _shrink_to(picture, max_side)
        # Display P3 (iPhone), Adobe RGB…: convert, since the profile itself is stripped.
        rgb_icc = _profile_for(im.mode, picture, icc)
        if rgb_icc and picture.mode in ("RGB", "RGBA") and not _is_srgb(rgb_icc):
            picture = _icc_to_srgb(picture, rgb_icc, picture.mode) or picture

    if _has_real_alpha(picture):
        out, out_fmt = _encode(picture, "PNG"), "PNG"
    else:
        out, out_fmt = _encode(picture, "JPEG", 90), "JPEG"
    width, height = picture.size
    if len(out) > INLINE_IMAGE_BYTES:
        fitted = _encode_to_fit(picture, INLINE_IMAGE_BYTES, try_png=False, icc=None)
        out, out_fmt, (width, height) = fitted.data, fitted.fmt, fitted.size
    return InboundImage(
        data=out,
        mime_type=_MIME_BY_FORMAT[out_fmt],
        width=width,
        height=height,
        original_format=fmt,
    )


# --------------------------------------------------------------------------------------------
# Outbound
# --------------------------------------------------------------------------------------------


def fit_to_limit(data: bytes, mime_type: str, *, limit_bytes: int) -> FittedImage:
    """The model's image, unchanged if it fits `limit_bytes`, else re-encoded until it does.

    Order: optimised PNG (only when nearly fitting), JPEG (or WebP when transparent) down a
    quality ladder, and only as a last resort a downscale. Size and aspect ratio are kept
    unless the note says "downscaled".
    """
    if limit_bytes < 1:
        raise ValueError("limit_bytes must be positive")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(
            f"The generated image is not in a format I can post (declared {mime_type or 'none'}, "
            f"got {_describe(data)})."
        )
    if fmt in _FORMATS_WE_POST and len(data) <= limit_bytes:
        width, height = image_size(data)
        mime = _MIME_BY_FORMAT[fmt]
        return FittedImage(data, mime, extension_for(mime), width, height, None)

    im, _ = _open(data, "The generated image", _OUTBOUND_MAX_PIXELS)
    with im:
        _load(im, "The generated image")
        icc = im.info.get("icc_profile")
        picture = _drop_fake_alpha(_standard_mode(_upright(im), icc))
    icc = _profile_for(im.mode, picture, icc)
    original_size = picture.size

    if len(data) <= limit_bytes:
        # It fits but Discord cannot preview it (GIF, HEIF): convert, losslessly if we can.
        fmt_out = "PNG" if fmt == "GIF" or _has_real_alpha(picture) else "JPEG"
        quality = 92 if fmt_out == "JPEG" else None
        out = _encode(picture, fmt_out, quality, icc=icc)
        if len(out) <= limit_bytes:
            mime = _MIME_BY_FORMAT[fmt_out]
            target = "PNG" if fmt_out == "PNG" else f"JPEG q{quality}"
            return FittedImage(
                out,
                mime,
                extension_for(mime),
                picture.width,
                picture.height,
                note=f"converted from {fmt} to {target}",
            )

    close = len(data) <= limit_bytes * _PNG_RETRY_RATIO
    small_enough = picture.width * picture.height <= _PNG_RETRY_MAX_PIXELS
    try_png = fmt == "PNG" and close and (small_enough or _has_real_alpha(picture))
    encoded = _encode_to_fit(picture, limit_bytes, try_png=try_png, icc=icc)

    action = f"re-encoded as {encoded.label}"
    if encoded.fmt == "PNG":
        action = "re-compressed as optimised PNG"
    if encoded.size != original_size:
        action = f"downscaled to {encoded.size[0]}×{encoded.size[1]} and {action}"
    mime = _MIME_BY_FORMAT[encoded.fmt]
    return FittedImage(
        data=encoded.data,
        mime_type=mime,
        extension=extension_for(mime),
        width=encoded.size[0],
        height=encoded.size[1],
        note=f"{action} to fit {_fmt_limit(limit_bytes)}",
    )


# --------------------------------------------------------------------------------------------
# Contact sheets and grids
# --------------------------------------------------------------------------------------------

_SHEET_BACKGROUND = (43, 45, 49)  # Discord's dark theme, so the sheet sits well in the chat
_SHEET_TILE_BACKGROUND = (30, 31, 34)
_SHEET_TEXT = (242, 243, 245)
_SHEET_MUTED = (148, 155, 164)
_SHEET_MIN_TILE = 48
_SHEET_MAX_TILE = 512
_SHEET_TILE_PIXELS = 40_000_000  # per tile: anchors and model outputs, never bigger


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow >= 10.1 bundles a scalable default font (needs FreeType); no font files to ship.
    return ImageFont.load_default(size=size)


def _text_width(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> float:
    return float(font.getlength(text))


def _clean_label(label: str) -> str:
    """One line of printable text: newlines and control characters become spaces."""
    chars = (" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in label)
    return " ".join("".join(chars).split())


def _fit_label(label: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> str:
    """The label, cut with an ellipsis so it fits `width` pixels."""
    text = _clean_label(label)
    if _text_width(font, text) <= width:
        return text
    low, high = 0, len(text)
    while low < high:  # longest prefix that fits with the ellipsis
        mid = (low + high + 1) // 2
        if _text_width(font, text[:mid].rstrip() + "…") <= width:
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip() + "…" if low else ""


def _auto_columns(count: int) -> int:
    return max(1, math.ceil(math.sqrt(count)))


def _tile_picture(data: bytes, box: tuple[int, int]) -> Image.Image | None:
    """A tile-sized, upright RGB(A) copy of the image, or None if it cannot be read."""
    try:
        im, fmt = _open(data, "", _SHEET_TILE_PIXELS)
        with im:
            if fmt == "JPEG":
                side = max(box)  # square: EXIF rotation may swap the sides later
                im.draft(None, (side, side))
            _load(im, "")
            icc = im.info.get("icc_profile")
            picture = _standard_mode(_upright(im), icc)
    except ImageError:
        return None
    picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
    picture.thumbnail(box, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return picture


def contact_sheet(
    items: Sequence[tuple[bytes, str]],
    *,
    max_width: int = 2048,
    limit_bytes: int = 8 * 1024 * 1024,
    columns: int | None = None,
) -> bytes:
    """A labelled grid of images (label under each), at most `max_width` px wide and under
    `limit_bytes`. Unreadable or empty image bytes get a grey "no image" tile, so a failed
    variant in a batch still has its place. Returns JPEG bytes (the tiles are photos)."""
    if not items:
        raise ValueError("contact_sheet needs at least one item")
    if max_width < _SHEET_MIN_TILE + 16:
        raise ValueError("max_width is too small for a contact sheet")
    count = len(items)
    gap = 12 if max_width >= 1024 else 6
    widest_cols = max(1, (max_width - gap) // (_SHEET_MIN_TILE + gap))
    cols = max(1, min(columns or _auto_columns(count), count, widest_cols))

    def widest_tile(cols: int) -> int:
        return min(_SHEET_MAX_TILE, (max_width - gap * (cols + 1)) // cols)

    sizes = [_safe_size(data) for data, _ in items]
    ratios = [h / w for w, h in sizes if w and h]
    aspect = min(2.0, max(0.5, statistics.median(ratios))) if ratios else 1.0

    # At most 4x as tall as wide: too many rows first get more columns (`columns` is a
    # preference), then smaller tiles.
    max_height = max_width * 4
    tile_w = widest_tile(cols)
    while True:
        rows = math.ceil(count / cols)
        tile_h = max(1, round(tile_w * aspect))
        font_size = max(11, min(28, tile_w // 12))
        font = _font(font_size)
        label_h = int(font.getbbox("Ag…")[3]) + gap // 2 + 2
        height = gap + rows * (tile_h + label_h + gap)
        if height <= max_height:
            break
        if cols < min(count, widest_cols):
            cols += 1
            tile_w = widest_tile(cols)
        elif tile_w > 16:
            tile_w = max(16, int(tile_w * 0.9))
        else:
            break  # hundreds of items in a narrow sheet: let it be tall
    width = gap + cols * (tile_w + gap)

    sheet = Image.new("RGB", (width, height), _SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for index, (data, label) in enumerate(items):
        row, col = divmod(index, cols)
        x = gap + col * (tile_w + gap)
        y = gap + row * (tile_h + label_h + gap)
        draw.rectangle((x, y, x + tile_w - 1, y + tile_h - 1), fill=_SHEET_TILE_BACKGROUND)
        picture = _tile_picture(data, (tile_w, tile_h)) if data else None
        if picture is None:
            note = _fit_label("no image", font, tile_w - 4)
            nx = x + (tile_w - _text_width(font, note)) / 2
            draw.text((nx, y + tile_h / 2 - font_size / 2), note, font=font, fill=_SHEET_MUTED)
        else:
            px = x + (tile_w - picture.width) // 2
            py = y + (tile_h - picture.height) // 2
            sheet.paste(picture, (px, py), picture if picture.mode == "RGBA" else None)
        text = _fit_label(label, font, tile_w - 2)
        tx = x + (tile_w - _text_width(font, text)) / 2
        draw.text((tx, y + tile_h + gap // 4 + 1), text, font=font, fill=_SHEET_TEXT)

    first = _encode(sheet, "JPEG", 90)
    if len(first) <= limit_bytes:
        return first
    return _encode_to_fit(sheet, limit_bytes, try_png=False, icc=None).data


def _safe_size(data: bytes) -> tuple[int, int]:
    try:
        return image_size(data) if data else (0, 0)
    except ImageError:
        return (0, 0)


def split_grid(data: bytes, rows: int, cols: int) -> list[bytes]:
    """Cut an R×C sheet (a 3×3 sprite sheet, a storyboard) into tiles, row by row.

    Tiles keep the input's format where it makes sense (PNG, JPEG, WEBP); GIF and HEIF
    become PNG. Uneven sizes are spread so the tiles differ by at most one pixel.
    """
    if not (1 <= rows <= 16 and 1 <= cols <= 16):
        raise ImageError("A grid needs 1 to 16 rows and 1 to 16 columns.")
    im, fmt = _open(data, "", _OUTBOUND_MAX_PIXELS)
    with im:
        _load(im, "")
        icc = im.info.get("icc_profile")
        picture = _standard_mode(_upright(im), icc)
        icc = _profile_for(im.mode, picture, icc)
    width, height = picture.size
    if cols > width or rows > height:
        raise ImageError(f"A {width}×{height} image is too small to cut into {rows}×{cols} tiles.")
    out_fmt = fmt if fmt in _FORMATS_WE_POST else "PNG"
    if out_fmt == "JPEG" and picture.mode in ("RGBA", "LA"):
        out_fmt = "PNG"
    xs = [round(i * width / cols) for i in range(cols + 1)]
    ys = [round(j * height / rows) for j in range(rows + 1)]
    tiles: list[bytes] = []
    for r in range(rows):
        for c in range(cols):
            tile = picture.crop((xs[c], ys[r], xs[c + 1], ys[r + 1]))
            # q95 keeps a second JPEG/WebP generation visually lossless.
            quality = 95 if out_fmt in ("JPEG", "WEBP") else None
            tiles.append(_encode(tile, out_fmt, quality, icc=icc))
    return tiles
