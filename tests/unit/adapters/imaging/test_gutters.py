"""Split with gutters: uniform gutters and borders found in the pixels, else an even cut."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.adapters.imaging import split_grid
from bot.adapters.imaging.gutters import even_boxes, grid_boxes


def _sheet(
    rows: int,
    cols: int,
    tile: tuple[int, int],
    *,
    gutter: int,
    border: int,
    gutter_colour: tuple[int, int, int] = (250, 250, 250),
) -> Image.Image:
    tw, th = tile
    width = 2 * border + cols * tw + (cols - 1) * gutter
    height = 2 * border + rows * th + (rows - 1) * gutter
    sheet = Image.new("RGB", (width, height), gutter_colour)
    for r in range(rows):
        for c in range(cols):
            cell = Image.effect_noise((tw, th), 50).convert("RGB")
            sheet.paste(cell, (border + c * (tw + gutter), border + r * (th + gutter)))
    return sheet


def _encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, quality=85)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize(
    ("rows", "cols", "tile", "gutter", "border"),
    [
        (3, 3, (320, 320), 16, 16),
        (2, 4, (300, 340), 10, 0),
        (2, 3, (200, 120), 0, 24),
        (3, 3, (100, 100), 7, 30),
    ],
)
def test_gutters_and_borders_are_trimmed(
    fmt: str, rows: int, cols: int, tile: tuple[int, int], gutter: int, border: int
) -> None:
    data = _encode(_sheet(rows, cols, tile, gutter=gutter, border=border), fmt)
    tiles = split_grid(data, rows, cols)
    assert len(tiles) == rows * cols
    assert {Image.open(io.BytesIO(t)).size for t in tiles} == {tile}


def test_dark_gutters_too() -> None:
    sheet = _sheet(2, 2, (150, 150), gutter=12, border=6, gutter_colour=(0, 0, 0))
    assert grid_boxes(sheet, 2, 2) == [
        (6, 6, 156, 156),
        (168, 6, 318, 156),
        (6, 168, 156, 318),
        (168, 168, 318, 318),
    ]


def test_no_gutters_means_an_even_cut() -> None:
    sheet = Image.effect_noise((300, 200), 40).convert("RGB")
    assert grid_boxes(sheet, 2, 3) == even_boxes(300, 200, 2, 3)


def test_background_the_colour_of_the_gutters_falls_back_to_an_even_cut() -> None:
    # Sprites of different widths on the gutter colour: the uniform runs are margins of
    # different sizes, not a grid, so the cut stays even and every frame keeps its size.
    sheet = Image.new("RGB", (300, 100), (255, 0, 255))
    for c, w in enumerate((20, 60, 90)):
        x = c * 100 + (100 - w) // 2
        sheet.paste(Image.effect_noise((w, 60), 50).convert("RGB"), (x, 20))
    boxes = grid_boxes(sheet, 1, 3)
    assert [b[2] - b[0] for b in boxes] == [100, 100, 100]


def test_trim_off_is_the_even_cut() -> None:
    data = _encode(_sheet(3, 3, (64, 64), gutter=8, border=8), "PNG")
    tiles = [Image.open(io.BytesIO(t)) for t in split_grid(data, 3, 3, trim=False)]
    assert sum(t.width for t in tiles[:3]) == 3 * 64 + 4 * 8  # gutters and borders kept
