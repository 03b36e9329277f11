"""Pillow image pipeline: inbound checks and normalising, outbound fit-to-limit, contact sheets.

Every function is synchronous and pure (bytes in, bytes out). Callers in async code run them in
`asyncio.to_thread` so a 4K decode never stalls the event loop.

Inbound images are hostile until proven otherwise: the format is sniffed from the bytes (not the
file name), the pixel count is checked from the header before anything is decoded, and a
truncated file is an error rather than a half-grey picture.

Modules, each with one job (this package re-exports what callers use):
  formats   errors, result types, MIME/extension tables, sniffing, declared-size check, wording
  decode    safe opening (sniffed plugin only, per-call pixel limit), loading, orientation
  colour    ICC to sRGB, standard modes, real vs fake alpha, downscaling
  encode    metadata-free encoders and encode-to-fit (size estimate, quality ladder, downscale)
  inbound   normalise_inbound: a user's image, cleaned for Gemini
  outbound  fit_to_limit: the model's image, under Discord's upload limit
  sheets    contact_sheet and split_grid
"""

from __future__ import annotations

from bot.adapters.imaging.decode import image_size
from bot.adapters.imaging.formats import (
    ACCEPTED_FORMATS,
    FittedImage,
    ImageError,
    InboundImage,
    check_declared_size,
    extension_for,
    sniff_format,
)
from bot.adapters.imaging.formats import MIB as MIB
from bot.adapters.imaging.formats import _fmt_limit as _fmt_limit
from bot.adapters.imaging.inbound import INLINE_IMAGE_BYTES as INLINE_IMAGE_BYTES
from bot.adapters.imaging.inbound import normalise_inbound
from bot.adapters.imaging.outbound import fit_to_limit
from bot.adapters.imaging.sheets import _fit_label as _fit_label
from bot.adapters.imaging.sheets import _font as _font
from bot.adapters.imaging.sheets import contact_sheet, split_grid

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
