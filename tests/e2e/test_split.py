"""Split end to end: offered only on grid results, the tiles cut at the fake's gutters, posted
numbered with a picker, and each picked tile refined in its own chain, upscaled or saved as an
anchor, also after a restart."""

from __future__ import annotations

import io

from PIL import Image

from tests.e2e.harness import BotHarness
from tests.e2e.test_commands import RESULT_BUTTONS, generation_id, result_of, wait_private
from tests.fakes.discord_driver import FakeInteraction
from tests.fakes.discord_limits import walk_components
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import MessageRecord
from tests.fakes.gemini import fake_mark_of

TILE_BUTTONS = ["Refine", "Upscale 2K", "Upscale 4K", "Save as anchor"]


async def sprite_sheet(h: BotHarness, user: str = "alice") -> MessageRecord:
    who = h.discord.user(user)
    return await result_of(await who.slash("template use", name="sprite_sheet_3x3"))


async def answer_of(ix: FakeInteraction, *, files: int = 1, within: float = 20) -> MessageRecord:
    await ix.wait_ack(3)
    await ix.fake._wait(
        lambda: ix.original_message is not None and len(ix.original_message.files) >= files,
        within,
        "the answer with its files",
    )
    message = ix.original_message
    assert message is not None
    return message


def selects(message: MessageRecord) -> list[dict[str, object]]:
    return [c for c in walk_components(message.components) if c.get("type") == 3]


def decoded(fake: FakeDiscord, message: MessageRecord, name: str) -> Image.Image:
    att = next(f for f in message.files if f.filename == name)
    return Image.open(io.BytesIO(fake.attachment_bytes(att)))


async def test_split_is_offered_only_on_grid_results(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    plain = await result_of(await fake.user("alice").slash("imagine", prompt="a lighthouse"))
    assert plain.button_labels == RESULT_BUTTONS
    spec = '{"subject": "frogs", "layout": {"grid": "2x2"}}'
    grid = await result_of(await fake.user("alice").slash("imagine", prompt=spec))
    assert grid.button_labels == [*RESULT_BUTTONS[:5], "Split", "Delete"]
    sheet = await sprite_sheet(bot_harness)
    assert "Split" in sheet.button_labels
    # a character sheet and a storyboard sheet declare theirs too
    for name in ("character_sheet", "storyboard_sheet"):
        made = await result_of(await fake.user("bob").slash("template use", name=name))
        assert "Split" in made.button_labels, name
    frame = await result_of(await fake.user("bob").slash("template use", name="storyboard_frame"))
    assert "Split" not in frame.button_labels  # one frame, no grid


async def test_split_a_3x3_sheet_into_9_tiles(bot_harness: BotHarness) -> None:
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    sheet = await sprite_sheet(h)
    issued = gemini.issued[-1]
    assert issued.grid == (3, 3)
    tile_w, tile_h = issued.tile_size or (0, 0)
    split = await answer_of(await fake.user("bob").click(sheet, "Split"), files=10)
    assert split.attachment_names == ["tiles.jpg", *[f"tile-{n}.png" for n in range(1, 10)]]
    for n in range(1, 10):
        tile = decoded(fake, split, f"tile-{n}.png")
        assert tile.size == (tile_w, tile_h), n  # gutters and border trimmed
        data = fake.attachment_bytes(next(f for f in split.files if f.filename == f"tile-{n}.png"))
        assert fake_mark_of(data) == issued.mark  # each tile of the same picture
    assert "9 tiles (3×3" in split.content
    [menu] = selects(split)
    assert [o["value"] for o in menu["options"]] == [str(n) for n in range(1, 10)]  # type: ignore[index]
    # no Gemini call: Split is Pillow work
    assert len(gemini.requests) == 1

    # splitting again reuses the same tiles
    again = await answer_of(await fake.user("alice").click(sheet, "Split"), files=10)
    assert again.id != split.id
    assert h.bot is not None
    tiles = await h.bot.store.batch_generations(f"split:{generation_id(sheet)}")
    assert len(tiles) == 9 and {t.kind for t in tiles} == {"tile"}


async def test_a_picked_tile_is_refined_in_its_own_chain(bot_harness: BotHarness) -> None:
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    sheet = await sprite_sheet(h)
    issued = gemini.issued[-1]
    split = await answer_of(await fake.user("alice").click(sheet, "Split"), files=10)
    alice = fake.user("alice")
    picked = await answer_of(await alice.select(split, ["5"]))
    assert picked.button_labels == TILE_BUTTONS
    assert picked.content.startswith("Tile 5 of #")
    tile_image = decoded(fake, picked, picked.files[0].filename)
    assert tile_image.size == issued.tile_size

    ix = await alice.click(picked, "Refine")
    await ix.wait_ack(3)
    assert ix.modal is not None
    step = await alice.submit_modal(ix, {"changes": "give the knight a green plume"})
    await step.wait_ack(3)
    await fake._wait(
        lambda: any(t.id == picked.id for t in fake.threads), 10, "a thread on the tile"
    )
    thread = next(t for t in fake.threads if t.id == picked.id)  # on the tile's message
    result = await fake.wait_for_message(
        channel=thread.id, predicate=lambda m: bool(m.embeds) and bool(m.files), timeout=20
    )
    request = gemini.requests[-1]
    assert request.spec is not None and request.spec["task"] == "edit_image"
    [(_mime, data)] = request.input_images
    with Image.open(io.BytesIO(data)) as sent:
        assert sent.size == issued.tile_size  # the tile, not the sheet
    assert fake_mark_of(data) == issued.mark
    assert "Undo" in result.button_labels  # a chain step
    assert h.bot is not None
    chain = await h.bot.store.chain_for_generation(generation_id(picked))
    assert chain is not None and chain.root_generation_id == generation_id(picked)
    assert chain.thread_id == picked.id


async def test_a_tile_upscales_and_saves_as_an_anchor(bot_harness: BotHarness) -> None:
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    sheet = await sprite_sheet(h)
    issued = gemini.issued[-1]
    split = await answer_of(await fake.user("alice").click(sheet, "Split"), files=10)
    alice = fake.user("alice")
    picked = await answer_of(await alice.select(split, ["1"]))
    await result_of(await alice.click(picked, "Upscale 2K"))
    request = gemini.requests[-1]
    assert request.image_config["imageSize"] == "2K"
    [(_mime, data)] = request.input_images
    assert Image.open(io.BytesIO(data)).size == issued.tile_size

    ix = await alice.click(picked, "Save as anchor")
    await ix.wait_ack(3)
    assert ix.modal is not None
    await alice.submit_modal(ix, {"name": "knight", "kind": "character"})
    await wait_private(fake, alice, lambda m: "Saved anchor **knight**" in m.content)
    assert h.bot is not None
    anchor = await h.bot.store.get_anchor(alice.id, "knight")
    assert anchor is not None and (anchor.width, anchor.height) == issued.tile_size


async def test_picker_and_split_work_after_a_restart(bot_harness: BotHarness) -> None:
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    sheet = await sprite_sheet(h)
    issued = gemini.issued[-1]
    split = await answer_of(await fake.user("alice").click(sheet, "Split"), files=10)
    await h.restart()
    picked = await answer_of(await fake.user("bob").select(split, ["9"]))
    assert picked.button_labels == TILE_BUTTONS
    assert decoded(fake, picked, picked.files[0].filename).size == issued.tile_size
    await h.restart()
    again = await answer_of(await fake.user("bob").click(sheet, "Split"), files=10)
    assert len(again.files) == 10
    assert h.bot is not None
    assert len(await h.bot.store.batch_generations(f"split:{generation_id(sheet)}")) == 9


async def test_private_results_split_privately(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    spec = '{"subject": "four gems", "layout": {"grid": "2x2"}}'
    sheet = await result_of(await alice.slash("imagine", prompt=spec, private=True))
    assert sheet.ephemeral and "Split" in sheet.button_labels
    split = await answer_of(await alice.click(sheet, "Split"), files=5)
    assert split.ephemeral and split.visible_to == alice.id
    assert split.attachment_names == ["tiles.jpg", *[f"tile-{n}.png" for n in range(1, 5)]]
    picked = await answer_of(await alice.select(split, ["4"]))
    assert picked.ephemeral and picked.button_labels == TILE_BUTTONS
    assert split.id not in {m.id for m in fake.messages_in("general")}
