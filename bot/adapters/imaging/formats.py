"""What an image is before any pixels: errors, result types, format tables, sniffing, sizes.

Everything here works on bytes and numbers only (no Pillow): the magic-byte sniffer, the
plain-words description of a file that is not an image, the declared-size check made before
a download, and the size wording used in user-facing messages.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "HEIF")

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
