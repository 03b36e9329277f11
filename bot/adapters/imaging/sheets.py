"""Contact sheets (a labelled grid of images, fonts and label fitting) and grid splitting."""

from __future__ import annotations

import functools
import math
import os
import shutil
import statistics
import subprocess
import unicodedata
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from bot.adapters.imaging.colour import _profile_for, _standard_mode
from bot.adapters.imaging.decode import _OUTBOUND_MAX_PIXELS, _load, _open, _upright, image_size
from bot.adapters.imaging.encode import _encode, _encode_to_fit
from bot.adapters.imaging.formats import _FORMATS_WE_POST, ImageError
from bot.adapters.imaging.gutters import even_boxes, grid_boxes

_SHEET_BACKGROUND = (43, 45, 49)  # Discord's dark theme, so the sheet sits well in the chat
_SHEET_TILE_BACKGROUND = (30, 31, 34)
_SHEET_TEXT = (242, 243, 245)
_SHEET_MUTED = (148, 155, 164)
_SHEET_MIN_TILE = 48
_SHEET_MAX_TILE = 512
_SHEET_TILE_PIXELS = 40_000_000  # per tile: anchors and model outputs, never bigger


# ---- label fonts -------------------------------------------------------------------------------
#
# Labels are user text (anchor names, batch values): any script. Each character is drawn with
# the first font that has it: a Latin font (DejaVu Sans also has Greek, Cyrillic and many
# symbols), then a CJK font, then whatever fontconfig picks for Chinese, Japanese and Korean,
# then Pillow's own scalable font (Latin only, always there). A character none of them has
# (most emoji) is drawn by the first font as its "missing glyph" box; nothing raises.

_FONT_DIRS: tuple[str, ...] = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.local/share/fonts",
    "~/.fonts",
    "/Library/Fonts",
    "/System/Library/Fonts",
    "C:/Windows/Fonts",
)
# File names, best first, per group; searched under _FONT_DIRS (any depth).
_LATIN_FONTS: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "NotoSans-Regular.ttf",
    "LiberationSans-Regular.ttf",
    "Arial Unicode.ttf",
    "Arial.ttf",
    "arial.ttf",
)
_CJK_FONTS: tuple[str, ...] = (
    "NotoSansCJK-Regular.ttc",
    "NotoSansCJKsc-Regular.otf",
    "NotoSansCJKjp-Regular.otf",
    "SourceHanSans-Regular.ttc",
    "wqy-microhei.ttc",
    "wqy-zenhei.ttc",
    "DroidSansFallbackFull.ttf",
    "DroidSansFallback.ttf",
    "PingFang.ttc",
    "Hiragino Sans GB.ttc",
    "msyh.ttc",
    "YuGothM.ttc",
    "malgun.ttf",
)
_FC_PATTERNS: tuple[str, ...] = ("sans-serif", ":lang=zh-cn", ":lang=ja", ":lang=ko")
_MISSING = "\U0010fffd"  # a private-use code point no font maps: its glyph is "missing"

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _fonts_on_disk(names: Sequence[str], dirs: Sequence[str]) -> list[str]:
    """Paths of the named font files under the directories, in the order of `names`."""
    wanted = {name.lower(): rank for rank, name in enumerate(names)}
    found: dict[int, str] = {}
    for top in dirs:
        root = os.path.expanduser(top)
        if not os.path.isdir(root):
            continue
        for folder, _subdirs, files in os.walk(root):
            for file in files:
                rank = wanted.get(file.lower())
                if rank is not None and rank not in found:
                    found[rank] = os.path.join(folder, file)
    return [found[rank] for rank in sorted(found)]


def _fontconfig_fonts(patterns: Sequence[str]) -> list[str]:
    """What fontconfig (fc-match) picks for each pattern; [] where it is not installed."""
    exe = shutil.which("fc-match")
    if exe is None:
        return []
    out: list[str] = []
    for pattern in patterns:
        try:
            done = subprocess.run(
                [exe, "--format=%{file}", pattern],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        path = done.stdout.strip()
        if done.returncode == 0 and path and os.path.isfile(path):
            out.append(path)
    return out


@functools.lru_cache(maxsize=1)
def label_font_paths() -> tuple[str, ...]:
    """The system fonts labels use, best first (searched once per process)."""
    paths = [
        *_fonts_on_disk(_LATIN_FONTS, _FONT_DIRS),
        *_fonts_on_disk(_CJK_FONTS, _FONT_DIRS),
        *_fontconfig_fonts(_FC_PATTERNS),
    ]
    return tuple(dict.fromkeys(os.path.realpath(p) for p in paths))


@functools.lru_cache(maxsize=64)
def _truetype(path: str, size: int) -> ImageFont.FreeTypeFont | None:
    try:
        return ImageFont.truetype(path, size)
    except (OSError, ValueError):  # unreadable, not a font, or no FreeType
        return None


class LabelFont:
    """A chain of fonts at one size, used like one font: each character is drawn with the
    first font that has a glyph for it, spaces and combining marks with their neighbour."""

    def __init__(self, fonts: Sequence[Font]) -> None:
        if not fonts:
            raise ValueError("LabelFont needs at least one font")
        self.fonts: tuple[Font, ...] = tuple(fonts)
        self._missing = [self._signature(f, _MISSING) for f in self.fonts]
        self._choice: dict[str, int] = {}

    @staticmethod
    def _signature(font: Font, ch: str) -> tuple[float, tuple[int, int], bytes]:
        try:
            mask = font.getmask(ch)
            return (float(font.getlength(ch)), mask.size, bytes(mask))
        except (OSError, ValueError, UnicodeError):  # a character this font cannot even try
            return (-1.0, (0, 0), b"")

    def has_glyph(self, index: int, ch: str) -> bool:
        return self._signature(self.fonts[index], ch) != self._missing[index]

    def _font_index(self, ch: str) -> int:
        found = self._choice.get(ch)
        if found is None:
            found = next((i for i in range(len(self.fonts)) if self.has_glyph(i, ch)), 0)
            self._choice[ch] = found
        return found

    def runs(self, text: str) -> list[tuple[Font, str]]:
        """The text cut into (font, piece) runs, in order."""
        runs: list[tuple[int, list[str]]] = []
        for ch in text:
            joins = ch.isspace() or unicodedata.category(ch) in ("Mn", "Me", "Cf")
            index = runs[-1][0] if joins and runs else self._font_index(ch)
            if runs and runs[-1][0] == index:
                runs[-1][1].append(ch)
            else:
                runs.append((index, [ch]))
        return [(self.fonts[i], "".join(chars)) for i, chars in runs]

    def getlength(self, text: str) -> float:
        return float(sum(font.getlength(piece) for font, piece in self.runs(text)))

    def line_height(self) -> int:
        """Pixels from the top of the tallest ascender to the bottom of the lowest descender."""
        ascent, descent = self._metrics()
        return ascent + descent

    def _metrics(self) -> tuple[int, int]:
        ascents, descents = [], []
        for font in self.fonts:
            if isinstance(font, ImageFont.FreeTypeFont):
                a, d = font.getmetrics()
            else:
                a, d = int(font.getbbox("Ag")[3]), 0
            ascents.append(a)
            descents.append(d)
        return max(ascents), max(descents)

    def draw(self, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: Any) -> None:
        """Draw the text with its top-left at `xy`, every run on one shared baseline."""
        x, top = xy
        baseline = top + self._metrics()[0]
        for font, piece in self.runs(text):
            if isinstance(font, ImageFont.FreeTypeFont):
                draw.text((x, baseline), piece, font=font, fill=fill, anchor="ls")
            else:  # a bitmap font takes no anchor
                draw.text((x, top), piece, font=font, fill=fill)
            x += font.getlength(piece)


def label_font(size: int, paths: Sequence[str] | None = None) -> LabelFont:
    """The label font chain at `size`: the system's fonts (or `paths`), then Pillow's own."""
    fonts: list[Font] = [
        f for f in (_truetype(p, size) for p in (label_font_paths() if paths is None else paths)) if f
    ]
    # Pillow >= 10.1 bundles a scalable font (needs FreeType), so there is always one.
    fonts.append(ImageFont.load_default(size=size))
    return LabelFont(fonts)


@functools.lru_cache(maxsize=32)
def _font(size: int) -> LabelFont:
    return label_font(size)


def _text_width(font: LabelFont, text: str) -> float:
    return font.getlength(text)


def _clean_label(label: str) -> str:
    """One line of printable text: newlines, control and format characters become spaces."""
    chars = (" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in label)
    return " ".join("".join(chars).split())


def _fit_label(label: str, font: LabelFont, width: float) -> str:
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
        label_h = font.line_height() + gap // 2 + 2
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
            font.draw(draw, (nx, y + (tile_h - font.line_height()) / 2), note, _SHEET_MUTED)
        else:
            px = x + (tile_w - picture.width) // 2
            py = y + (tile_h - picture.height) // 2
            sheet.paste(picture, (px, py), picture if picture.mode == "RGBA" else None)
        text = _fit_label(label, font, tile_w - 2)
        tx = x + (tile_w - _text_width(font, text)) / 2
        font.draw(draw, (tx, y + tile_h + gap // 4 + 1), text, _SHEET_TEXT)

    first = _encode(sheet, "JPEG", 90)
    if len(first) <= limit_bytes:
        return first
    return _encode_to_fit(sheet, limit_bytes, try_png=False, icc=None).data


def _safe_size(data: bytes) -> tuple[int, int]:
    try:
        return image_size(data) if data else (0, 0)
    except ImageError:
        return (0, 0)


def split_grid(data: bytes, rows: int, cols: int, *, trim: bool = True) -> list[bytes]:
    """Cut an R×C sheet (a 3×3 sprite sheet, a storyboard) into tiles, row by row.

    With `trim`, uniform gutters between the tiles and borders around them are found in the
    pixels and left out (see bot.adapters.imaging.gutters); where none show consistently, or
    without `trim`, the cut is even. Tiles keep the input's format where it makes sense (PNG,
    JPEG, WEBP); GIF and HEIF become PNG. Uneven sizes are spread so the tiles differ by at
    most one pixel.
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
    boxes = grid_boxes(picture, rows, cols) if trim else even_boxes(width, height, rows, cols)
    tiles: list[bytes] = []
    for box in boxes:
        tile = picture.crop(box)
        # q95 keeps a second JPEG/WebP generation visually lossless.
        quality = 95 if out_fmt in ("JPEG", "WEBP") else None
        tiles.append(_encode(tile, out_fmt, quality, icc=icc))
    return tiles
