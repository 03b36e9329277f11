"""Decoded pixels into the shape every encoder takes: sRGB colour, a standard mode, alpha
only where it is real, and at most a given size."""

from __future__ import annotations

import io

from PIL import Image, ImageCms


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
