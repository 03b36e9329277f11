"""Outbound: the model's image, made postable and small enough for Discord's upload limit."""

from __future__ import annotations

from bot.adapters.imaging.colour import (
    _drop_fake_alpha,
    _has_real_alpha,
    _profile_for,
    _standard_mode,
)
from bot.adapters.imaging.decode import _OUTBOUND_MAX_PIXELS, _load, _open, _upright, image_size
from bot.adapters.imaging.encode import _encode, _encode_to_fit
from bot.adapters.imaging.formats import (
    _FORMATS_WE_POST,
    _MIME_BY_FORMAT,
    FittedImage,
    ImageError,
    _describe,
    _fmt_limit,
    extension_for,
    sniff_format,
)

# Optimised PNG rarely saves more than ~10%, and costs ~2 s at 4K: only worth it when close.
_PNG_RETRY_RATIO = 1.10
_PNG_RETRY_MAX_PIXELS = 8_400_000  # about 2896x2896 (a 2K output is 4.2 MP)


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
    _load(im, "The generated image")
    icc = im.info.get("icc_profile")
    # Model output rarely needs turning: keep the decoded pixels rather than a copy of them
    # (67 MB at 4K, with fits of several results running at once).
    picture = _drop_fake_alpha(_standard_mode(_upright(im, copy=False), icc))
    if picture is not im:
        im.close()
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
