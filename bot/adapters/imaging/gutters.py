"""Where the tiles of an R×C sheet really are: uniform gutters and borders found in the pixels.

Image models draw sprite sheets and storyboards with gutters between the cells and often a
border around them, rarely at exactly W/C. A gutter is a run of lines (columns or rows) all of
one colour, near where an even cut would fall; a border is such a run at an edge. The colour
is read from the expected cut lines themselves. When the runs found do not make a consistent
grid (tiles of clearly different sizes, gutters of clearly different widths: say a sprite on a
background the same colour as the gutters), the even cut is used instead.

Pillow only (no numpy): a line's "busy" share is the mean of a 0/255 difference mask squeezed to
one pixel per line with a box filter, all in C.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageChops

Box = tuple[int, int, int, int]
Span = tuple[int, int]  # [start, end) along one axis

# A pixel differs from the gutter colour when some channel is further than this (JPEG noise).
PIXEL_TOLERANCE = 28
# A line is uniform when at most this share of its pixels differ (out of 255).
BUSY_LIMIT = 4
# Gutters are searched within this share of a tile on either side of the even cut.
SEARCH_WINDOW = 0.2
# A run wider than this share of a tile is background, not a gutter; a border likewise.
MAX_GUTTER = 0.35
MAX_BORDER = 0.3
# Tiles may differ by this share (plus a pixel) and still be one grid.
SIZE_SLACK = 0.06


def even_spans(length: int, count: int) -> list[Span]:
    edges = [round(i * length / count) for i in range(count + 1)]
    return [(edges[i], edges[i + 1]) for i in range(count)]


def even_boxes(width: int, height: int, rows: int, cols: int) -> list[Box]:
    return _boxes(even_spans(width, cols), even_spans(height, rows))


def _boxes(xs: Sequence[Span], ys: Sequence[Span]) -> list[Box]:
    return [(x0, y0, x1, y1) for (y0, y1) in ys for (x0, x1) in xs]


def _uniform_colour(line: Image.Image) -> tuple[int, int, int] | None:
    """The colour of a one-pixel line if (nearly) all of it is that colour."""
    extrema = line.getextrema()
    assert isinstance(extrema, tuple)
    bands: list[tuple[int, int]] = list(extrema)  # type: ignore[arg-type]
    if any(high - low > PIXEL_TOLERANCE * 2 for low, high in bands):
        return None
    # The median pixel of the line: robust to a few stray ones.
    raw = line.tobytes()
    pixels = sorted((raw[i : i + 3] for i in range(0, len(raw) - 2, 3)), key=sum)
    r, g, b = pixels[len(pixels) // 2]
    return r, g, b


def _gutter_colour(rgb: Image.Image, rows: int, cols: int) -> tuple[int, int, int] | None:
    """The colour of the first uniform line among the even cut lines, then the edges."""
    width, height = rgb.size
    candidates: list[Box] = []
    for i in range(1, cols):
        x = min(width - 1, round(i * width / cols))
        candidates += [(x, 0, x + 1, height), (max(0, x - 1), 0, max(1, x), height)]
    for j in range(1, rows):
        y = min(height - 1, round(j * height / rows))
        candidates += [(0, y, width, y + 1), (0, max(0, y - 1), width, max(1, y))]
    candidates += [(0, 0, 1, height), (0, 0, width, 1)]
    for box in candidates:
        colour = _uniform_colour(rgb.crop(box))
        if colour is not None:
            return colour
    return None


def _busy_lines(rgb: Image.Image, colour: tuple[int, int, int]) -> tuple[list[int], list[int]]:
    """Per column and per row: the share (0-255) of pixels that are not the gutter colour."""
    diff = ImageChops.difference(rgb, Image.new("RGB", rgb.size, colour))
    r, g, b = diff.split()
    strongest = ImageChops.lighter(ImageChops.lighter(r, g), b)
    mask = strongest.point(lambda v: 255 if v > PIXEL_TOLERANCE else 0)
    width, height = rgb.size
    columns = mask.resize((width, 1), Image.Resampling.BOX).tobytes()
    lines = mask.resize((1, height), Image.Resampling.BOX).tobytes()
    return list(columns), list(lines)


def _runs(busy: Sequence[int]) -> list[Span]:
    runs: list[Span] = []
    start: int | None = None
    for i, value in enumerate(busy):
        if value <= BUSY_LIMIT:
            if start is None:
                start = i
        elif start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(busy)))
    return runs


def _spans(busy: Sequence[int], count: int) -> list[Span] | None:
    """The `count` tiles along one axis between the borders and gutters found, or None when
    what was found does not make an even grid."""
    length = len(busy)
    runs = _runs(busy)
    tile = length / count
    lead = next((e for s, e in runs if s == 0 and e - s <= MAX_BORDER * tile), 0)
    trail = next((s for s, e in runs if e == length and e - s <= MAX_BORDER * tile), length)
    if trail - lead < count:
        return None
    inner = (trail - lead) / count
    gutters: list[Span] = []
    for i in range(1, count):
        expected = lead + i * inner
        window = SEARCH_WINDOW * inner
        near = [
            (s, e)
            for s, e in runs
            if s < expected + window and e > expected - window and e - s <= MAX_GUTTER * inner
        ]
        if near:
            gutters.append(min(near, key=lambda r: abs((r[0] + r[1]) / 2 - expected)))
        else:
            cut = round(expected)
            gutters.append((cut, cut))
    edges = [lead, *[x for g in gutters for x in g], trail]
    spans = [(edges[2 * i], edges[2 * i + 1]) for i in range(count)]
    sizes = [e - s for s, e in spans]
    if min(sizes) <= 0 or max(sizes) - min(sizes) > SIZE_SLACK * max(sizes) + 1:
        return None
    widths = [e - s for s, e in gutters]
    if widths and max(widths) - min(widths) > max(2, SIZE_SLACK * inner):
        return None
    return spans


def grid_boxes(picture: Image.Image, rows: int, cols: int) -> list[Box]:
    """The tiles of an R×C sheet, row by row: gutters and borders trimmed where the pixels
    show them consistently, else an even cut."""
    width, height = picture.size
    rgb = picture if picture.mode == "RGB" else picture.convert("RGB")
    colour = _gutter_colour(rgb, rows, cols)
    if colour is None:
        return even_boxes(width, height, rows, cols)
    columns, lines = _busy_lines(rgb, colour)
    xs = _spans(columns, cols) or even_spans(width, cols)
    ys = _spans(lines, rows) or even_spans(height, rows)
    return _boxes(xs, ys)
