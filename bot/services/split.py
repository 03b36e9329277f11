"""Split: cut a grid result (its spec declares layout.grid) into its tiles, keep each tile as a
result of its own, and build what the Split message shows.

Tiles are recorded once per result (kind "tile", batch "split:<id>", owner and privacy of the
result), so a second Split, or a pick after a restart, finds the same tiles. Each tile is a
finished generation with its own image: Refine starts a chain from it, Upscale re-renders it,
Save as anchor stores it, through the same code as any result. Pillow work runs in a thread.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass
from typing import Any

from bot.adapters import imaging
from bot.adapters.imaging.formats import _MIME_BY_FORMAT
from bot.adapters.prompts import SpecError
from bot.adapters.prompts.grid import grid_of
from bot.adapters.prompts.validate import model_capability, nearest_aspect
from bot.adapters.store import GenerationRow, Store
from bot.errors import UserError

log = logging.getLogger(__name__)

MAX_TILES = 100  # four select menus of 25
MAX_FILES = 10  # Discord: attachments per message
SHEET_FILENAME = "tiles.jpg"


def split_batch(generation_id: int) -> str:
    return f"split:{generation_id}"


@dataclass
class Tile:
    number: int
    row: GenerationRow
    width: int
    height: int


@dataclass
class SplitSheet:
    source: GenerationRow
    rows: int
    cols: int
    tiles: list[Tile]

    @property
    def tile_size(self) -> tuple[int, int]:
        first = self.tiles[0]
        return first.width, first.height


def tile_spec(spec: dict[str, Any], *, source_id: int, number: int, grid: str) -> dict[str, Any]:
    """A tile's spec: its result's, without the grid (a tile is one picture), and where it
    came from in metadata."""
    out = copy.deepcopy(spec)
    layout = out.get("layout")
    if isinstance(layout, dict):
        layout.pop("grid", None)
        if not layout:
            out.pop("layout")
    found = out.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    out["metadata"] = {**metadata, "tile": {"of": source_id, "number": number, "grid": grid}}
    return out


def _tile_aspect(width: int, height: int, model: str) -> str:
    try:
        return nearest_aspect(width, height, model_capability(model).aspect_ratios)
    except SpecError:
        return "1:1"


class SplitService:
    def __init__(self, *, store: Store) -> None:
        self.store = store
        self._locks: dict[int, asyncio.Lock] = {}
        # Cutting a 4K sheet is ~100 MB of pixels: one at a time.
        self._cutting = asyncio.Semaphore(1)

    async def split(self, gen: GenerationRow) -> SplitSheet:
        """The tiles of a grid result, cut and recorded the first time."""
        grid = grid_of(gen.spec)
        if grid is None or gen.kind == "tile":
            raise UserError("This result's spec declares no grid (layout.grid), so it has no tiles.")
        rows, cols = grid
        if rows * cols > MAX_TILES:
            raise UserError(f"A {rows}×{cols} grid has more tiles than I can list ({MAX_TILES}).")
        if gen.status != "done" or gen.output_image is None:
            raise UserError("This result has no image to split.")
        lock = self._locks.setdefault(gen.id, asyncio.Lock())
        async with lock:
            existing = await self._recorded(gen, rows * cols)
            if existing is not None:
                return SplitSheet(gen, rows, cols, existing)
            stored = await self.store.get_image(gen.output_image)
            if stored is None:
                raise UserError("This image is past the retention period and no longer stored.")
            async with self._cutting:
                try:
                    pieces = await asyncio.to_thread(imaging.split_grid, stored[0], rows, cols)
                except imaging.ImageError as exc:
                    raise UserError(str(exc)) from None
            tiles = [
                await self._record(gen, number, data, rows, cols)
                for number, data in enumerate(pieces, start=1)
            ]
            log.info("split %s into %d tiles (%dx%d)", gen.id, len(tiles), rows, cols)
            return SplitSheet(gen, rows, cols, tiles)

    async def tile(self, gen: GenerationRow, number: int) -> Tile:
        """Tile `number` (from 1) of a result, cutting it first if nobody has yet."""
        sheet = await self.split(gen)
        if not 1 <= number <= len(sheet.tiles):
            raise UserError(f"There is no tile {number}; pick 1 to {len(sheet.tiles)}.")
        return sheet.tiles[number - 1]

    async def _recorded(self, gen: GenerationRow, count: int) -> list[Tile] | None:
        rows = [r for r in await self.store.batch_generations(split_batch(gen.id)) if r.kind == "tile"]
        if len(rows) < count:
            return None
        rows.sort(key=lambda r: int(r.spec.get("metadata", {}).get("tile", {}).get("number", 0)))
        tiles = []
        for number, row in enumerate(rows[:count], start=1):
            width, height = _dims(row)
            tiles.append(Tile(number, row, width, height))
        return tiles

    async def _record(
        self, gen: GenerationRow, number: int, data: bytes, rows: int, cols: int
    ) -> Tile:
        width, height = await asyncio.to_thread(imaging.image_size, data)
        mime = _MIME_BY_FORMAT.get(imaging.sniff_format(data) or "PNG", "image/png")
        sha = await self.store.put_image(data, mime)
        grid = f"{rows}x{cols}"
        spec = tile_spec(gen.spec, source_id=gen.id, number=number, grid=grid)
        spec["metadata"]["tile"]["size"] = [width, height]
        tile_id = await self.store.record_generation(
            user_id=gen.user_id,
            guild_id=gen.guild_id,
            channel_id=gen.channel_id,
            kind="tile",
            spec=spec,
            model=gen.model,
            size=gen.size,
            aspect=_tile_aspect(width, height, gen.model),
            summary=f"Tile {number}/{rows * cols} of #{gen.id}: {gen.summary}"[:200],
            input_images=[gen.output_image] if gen.output_image else [],
            output_image=sha,
            output_mime=mime,
            batch_id=split_batch(gen.id),
            private=gen.private,
        )
        row = await self.store.get_generation(tile_id)
        assert row is not None
        return Tile(number, row, width, height)

    async def message_files(
        self, sheet: SplitSheet, *, limit_bytes: int
    ) -> list[tuple[str, bytes]]:
        """What the Split message attaches: a numbered contact sheet, then every tile as its
        own file when they fit in one message (Discord: 10 attachments), all of them together
        within the upload limit."""
        images: list[bytes] = []
        for tile in sheet.tiles:
            assert tile.row.output_image is not None
            stored = await self.store.get_image(tile.row.output_image)
            images.append(stored[0] if stored else b"")
        items = [(data, str(n)) for n, data in enumerate(images, start=1)]
        with_tiles = len(images) + 1 <= MAX_FILES
        share = limit_bytes // (len(images) + 1) if with_tiles else limit_bytes
        sheet_jpeg = await asyncio.to_thread(
            imaging.contact_sheet,
            items,
            max_width=1536,
            limit_bytes=min(share, 8 * 1024 * 1024),
            columns=sheet.cols,
        )
        files = [(SHEET_FILENAME, sheet_jpeg)]
        if with_tiles:
            for number, data in enumerate(images, start=1):
                fitted = await asyncio.to_thread(
                    imaging.fit_to_limit, data, _mime_of(data), limit_bytes=share
                )
                files.append((f"tile-{number}.{fitted.extension}", fitted.data))
        return files


def _mime_of(data: bytes) -> str:
    return _MIME_BY_FORMAT.get(imaging.sniff_format(data) or "PNG", "image/png")


def _dims(row: GenerationRow) -> tuple[int, int]:
    size = row.spec.get("metadata", {}).get("tile", {}).get("size")
    if isinstance(size, list) and len(size) == 2:
        return int(size[0]), int(size[1])
    return 0, 0
