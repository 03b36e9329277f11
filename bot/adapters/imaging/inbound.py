"""Inbound: check and clean a user's image before it is sent to Gemini."""

from __future__ import annotations

from bot.adapters.imaging.colour import (
    _drop_fake_alpha,
    _has_real_alpha,
    _icc_to_srgb,
    _is_srgb,
    _profile_for,
    _scaled,
    _shrink_to,
    _standard_mode,
)
from bot.adapters.imaging.decode import _load, _open, _upright
from bot.adapters.imaging.encode import _encode, _encode_to_fit
from bot.adapters.imaging.formats import _MIME_BY_FORMAT, InboundImage

# Gemini wants one inline image under 7 MB; normalised inbound images are kept below that.
INLINE_IMAGE_BYTES = 7_000_000


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
