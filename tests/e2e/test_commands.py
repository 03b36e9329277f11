"""/imagine, /prompt, /edit and /blend end to end: real bot, fake Discord, fake Gemini.

Also the helpers the other e2e modules of the core flows share (wait for a result, read its
generation id, its image).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re

from PIL import Image

from tests.e2e.conftest import png_bytes
from tests.e2e.harness import BotHarness
from tests.fakes.discord_driver import FakeInteraction, FakeUser, Upload
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import MessageRecord
from tests.fakes.gemini import fake_mark_of

RESULT_BUTTONS = ["Reroll", "Refine", "Upscale 2K", "Upscale 4K", "Prompt", "Delete"]


# ------------------------------------------------------------------------------ helpers


def is_result(message: MessageRecord) -> bool:
    return bool(message.embeds) and any(f.filename.startswith("nano-banana") for f in message.files)


async def wait_result(fake: FakeDiscord, *, within: float = 20, **kw: object) -> MessageRecord:
    """The next bot message that is a finished result (image + embed)."""
    return await fake.wait_for_message(predicate=is_result, timeout=within, **kw)  # type: ignore[arg-type]


async def result_of(ix: FakeInteraction, *, within: float = 20) -> MessageRecord:
    """The interaction's own response message, once it holds a finished result."""
    fake = ix.fake
    await ix.wait_ack(3)
    await fake._wait(
        lambda: ix.original_message is not None and is_result(ix.original_message),
        within,
        f"a result in the response to {ix.record.name!r}",
    )
    message = ix.original_message
    assert message is not None
    return message


def image_of(fake: FakeDiscord, message: MessageRecord) -> bytes:
    att = next(f for f in message.files if f.filename.startswith("nano-banana"))
    return fake.attachment_bytes(att)


def generation_id(message: MessageRecord) -> int:
    for button in message.buttons:
        match = re.fullmatch(r"nb:[a-z0-9]+:(\d+)", str(button.get("custom_id", "")))
        if match:
            return int(match.group(1))
    raise AssertionError(f"no generation button on {message!r}")


def fields(message: MessageRecord) -> dict[str, str]:
    embed = message.embed or {}
    return {f["name"]: f["value"] for f in embed.get("fields") or []}


def prompt_json(fake: FakeDiscord, message: MessageRecord) -> dict[str, object]:
    att = next(f for f in message.files if f.filename == "prompt.json")
    data: dict[str, object] = json.loads(fake.attachment_bytes(att))
    return data


def latest_private(user: FakeUser) -> MessageRecord:
    mine = user.ephemeral_messages()
    assert mine, "no private message for the user"
    return mine[-1]


async def wait_private(
    fake: FakeDiscord, user: FakeUser, predicate: object = None, within: float = 10
) -> MessageRecord:
    """The next ephemeral bot message for `user` (optionally matching a predicate)."""
    check = predicate if callable(predicate) else (lambda m: True)
    return await fake.wait_for_message(
        predicate=lambda m: m.visible_to == user.id and bool(m.content) and check(m),
        ephemeral=True,
        timeout=within,
    )


def public_bot_messages(fake: FakeDiscord, channel: str = "general") -> list[MessageRecord]:
    return [m for m in fake.messages_in(channel) if m.author.id == fake.bot_user.id]


def noisy_png(width: int, height: int) -> bytes:
    """A PNG that does not compress (so its size is predictable)."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buf, "PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------ /imagine


async def test_imagine_with_every_option(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    refs = [png_bytes(64, 48, c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    ix = await alice.slash(
        "imagine",
        prompt="a lighthouse at dusk",
        aspect="16:9",
        size="2K",
        model="flash",
        negative="people, boats",
        style="oil painting",
        reference=Upload("a.png", refs[0]),
        reference2=Upload("b.png", refs[1]),
        reference3=Upload("c.png", refs[2]),
        private=False,
    )
    assert await ix.wait_ack(3) == 5  # "thinking" at once, the work follows
    assert ix.ack_latency is not None and ix.ack_latency < 3
    result = await result_of(ix)
    assert not result.ephemeral

    request = gemini.requests[-1]
    assert request.model == "gemini-3.1-flash-image"
    assert request.image_config == {"aspectRatio": "16:9", "imageSize": "2K"}
    spec = request.spec
    assert spec is not None
    assert spec["subject"] == "a lighthouse at dusk"
    assert spec["negative_prompt"] == "people, boats"
    assert spec["style"] == "oil painting"
    assert len(request.input_images) == 3

    assert result.embed is not None and "a lighthouse at dusk" in result.embed["title"]
    f = fields(result)
    assert f["Model"] == "Nano Banana 2"
    assert f["Size"] == "2K · 16:9"
    assert f["Est. cost"].startswith("$0.10")  # 2K image plus input tokens
    assert re.fullmatch(r"\d+\.\d s", f["Time"])
    assert gemini.reply_text and gemini.reply_text in (result.embed.get("description") or "")
    assert result.button_labels == RESULT_BUTTONS
    assert fake_mark_of(image_of(fake, result)) == gemini.issued[-1].mark
    shown = prompt_json(fake, result)
    assert shown["subject"] == "a lighthouse at dusk"
    assert "resolved_inputs" not in json.dumps(shown)


async def test_progress_then_result_in_the_same_message(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    gemini.latency = 1.5
    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt="a slow snail")
    result = await result_of(ix)
    progress = [e for e in result.edits if e.content.startswith("⏳")]
    assert progress and all("Generating with Nano Banana Pro…" in e.content for e in progress)
    assert any(re.search(r"… [1-9]\d* s$", e.content) for e in progress)  # the seconds count
    # coalesced: never two identical progress texts in a row, never faster than the interval
    texts = [e.content for e in progress]
    assert all(a != b for a, b in itertools.pairwise(texts))
    progress_times = [e.at for e in result.edits][:-1]  # the last edit is the result itself
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(progress_times))
    assert result.id == ix.original_message.id


async def test_settings_defaults_apply_when_options_are_left_out(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, bob = fake.user("alice"), fake.user("bob")
    ix = await alice.slash("settings", model="flash", aspect="4:3", size="512")
    await ix.wait_ack(3)
    await result_of(await alice.slash("imagine", prompt="a red kite"))
    request = gemini.requests[-1]
    assert request.model == "gemini-3.1-flash-image"
    assert request.image_config == {"aspectRatio": "4:3", "imageSize": "512"}
    # an explicit option beats the default; other people keep the built-in defaults
    await result_of(await alice.slash("imagine", prompt="a red kite", aspect="1:1"))
    assert gemini.requests[-1].image_config == {"aspectRatio": "1:1", "imageSize": "512"}
    await result_of(await bob.slash("imagine", prompt="a blue kite"))
    assert gemini.requests[-1].model == "gemini-3-pro-image"
    assert gemini.requests[-1].image_config == {"aspectRatio": "1:1", "imageSize": "1K"}


async def test_private_imagine_only_the_requester_sees(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    result = await result_of(await alice.slash("imagine", prompt="a secret garden", private=True))
    assert result.ephemeral and result.visible_to == alice.id
    assert not public_bot_messages(fake)


async def test_private_by_default_from_settings(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    await (await alice.slash("settings", private=True)).wait_ack(3)
    result = await result_of(await alice.slash("imagine", prompt="a quiet pond"))
    assert result.ephemeral


async def test_imagine_malformed_json_gives_line_and_column(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt='{"subject": "a cat",\n "style": }')
    assert await ix.wait_ack(3) == 4
    message = await ix.original()
    assert message.ephemeral
    assert "line 2" in message.content and "column" in message.content
    assert gemini.requests == []
    assert not public_bot_messages(fake)


async def test_imagine_from_a_template(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    ix = await alice.slash(
        "imagine", prompt="product=ceramic teapot; color=sage green", template="product_shot"
    )
    await result_of(ix)
    spec = gemini.requests[-1].spec
    assert spec is not None
    assert spec["product"]["name"] == "ceramic teapot"
    assert spec["product"]["color"] == "sage green"


async def test_long_prompt_is_a_warning_in_the_embed(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    prompt = "a very detailed city street with " + ", ".join(
        f"shop number {i} with a striped awning" for i in range(200)
    )
    result = await result_of(await alice.slash("imagine", prompt=prompt[:5900]))
    assert "tokens" in fields(result).get("Notes", "")


# ------------------------------------------------------------------------------ attachments


async def test_non_image_attachment_is_refused_privately(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    ix = await alice.slash(
        "imagine", prompt="use this", reference=Upload("notes.txt", b"just some words\n" * 20)
    )
    await ix.wait_ack(3)
    message = await wait_private(fake, alice, lambda m: "notes.txt" in m.content)
    assert "not an image" in message.content
    assert gemini.requests == []
    assert not [m for m in public_bot_messages(fake) if not m.deleted]


async def test_oversized_attachment_is_refused_before_download(harness: BotHarness) -> None:
    await harness.start(max_attachment_bytes=100_000)
    fake, gemini = harness.discord, harness.gemini
    alice = fake.user("alice")
    big = noisy_png(256, 256)  # ~200 KB
    ix = await alice.slash("edit", image=Upload("huge.png", big), changes="brighter")
    assert await ix.wait_ack(3) == 4  # refused at once, privately
    message = await ix.original()
    assert message.ephemeral and "huge.png" in message.content and "limit" in message.content
    assert gemini.requests == []
    assert not public_bot_messages(fake)


# ------------------------------------------------------------------------------ /prompt


SPEC = {
    "task": "generate_image",
    "subject": "a paper boat on a puddle",
    "lighting": {"type": "overcast"},
    "mood": "calm",
    "output_format": {"aspect_ratio": "3:2"},
}


async def test_prompt_with_json(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    await result_of(await alice.slash("prompt", json=json.dumps(SPEC)))
    request = gemini.requests[-1]
    assert request.image_config["aspectRatio"] == "3:2"
    assert request.spec is not None
    assert request.spec["mood"] == "calm"  # unknown keys are kept and sent
    assert "output_format" not in request.spec


async def test_prompt_malformed_json_gives_line_and_column(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    ix = await alice.slash("prompt", json='{"subject": "a boat" "style": "ink"}')
    assert await ix.wait_ack(3) == 4
    message = await ix.original()
    assert message.ephemeral
    assert "line 1" in message.content and "column" in message.content
    assert gemini.requests == []


async def test_prompt_with_a_file(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    data = json.dumps(SPEC, indent=2).encode()
    result = await result_of(await alice.slash("prompt", file=Upload("boat.json", data)))
    assert gemini.requests[-1].spec["subject"] == SPEC["subject"]
    assert prompt_json(fake, result)["subject"] == SPEC["subject"]


async def test_prompt_file_with_bad_json_is_private(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    data = b'{\n  "subject": "a boat",\n  "style": "ink",,\n}'
    ix = await alice.slash("prompt", file=Upload("broken.json", data))
    await ix.wait_ack(3)
    message = await wait_private(fake, alice)
    assert "line 3" in message.content and "column" in message.content
    assert gemini.requests == []
    assert not [m for m in public_bot_messages(fake) if not m.deleted]


async def test_prompt_modal_flow(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    ix = await alice.slash("prompt")
    assert await ix.wait_ack(3) == 9
    assert ix.modal is not None
    submitted = await alice.submit_modal(ix, {"prompt_json": json.dumps(SPEC)})
    result = await result_of(submitted)
    assert gemini.requests[-1].spec["subject"] == SPEC["subject"]
    assert result.button_labels == RESULT_BUTTONS


async def test_prompt_modal_prefilled_from_a_template(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    ix = await alice.slash("prompt", template="product_shot")
    assert await ix.wait_ack(3) == 9
    text_input = next(
        c
        for row in ix.modal["components"]
        for c in ([row.get("component")] if row.get("component") else row.get("components", []))
        if c and c.get("custom_id") == "prompt_json"
    )
    prefilled = text_input.get("value") or ""
    assert "{{product" in prefilled
    await result_of(await alice.submit_modal(ix, {"prompt_json": prefilled}))
    spec = gemini.requests[-1].spec
    assert spec is not None and spec["product"]["name"] == "wireless over-ear headphones"


async def test_prompt_modal_with_bad_json_is_private(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    ix = await alice.slash("prompt")
    submitted = await alice.submit_modal(ix, {"prompt_json": '{"subject": }'})
    assert await submitted.wait_ack(3) == 4
    message = await submitted.original()
    assert message.ephemeral and "column" in message.content
    assert gemini.requests == []


# ------------------------------------------------------------------------------ /edit /blend


async def test_edit_with_a_reference(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    target, style = png_bytes(96, 64, (10, 200, 10)), png_bytes(32, 32, (200, 10, 200))
    ix = await alice.slash(
        "edit",
        image=Upload("photo.png", target),
        changes="make the sky stormy",
        reference=Upload("sky.png", style),
        aspect="3:2",
    )
    result = await result_of(ix)
    request = gemini.requests[-1]
    spec = request.spec
    assert spec is not None and spec["task"] == "edit_image"
    assert spec["changes"] == "make the sky stormy"
    assert [i["role"] for i in spec["inputs"]] == ["edit_target", "reference"]
    assert len(request.input_images) == 2
    assert request.image_config["aspectRatio"] == "3:2"
    assert fields(result)["Size"] == "1K · 3:2"


async def test_blend_three_images(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    colours = ((250, 0, 0), (0, 250, 0), (0, 0, 250))
    ix = await alice.slash(
        "blend",
        image1=Upload("one.png", png_bytes(40, 40, colours[0])),
        image2=Upload("two.png", png_bytes(40, 40, colours[1])),
        image3=Upload("three.png", png_bytes(40, 40, colours[2])),
        instructions="a single tricolour flag",
        size="2K",
    )
    await result_of(ix)
    request = gemini.requests[-1]
    assert len(request.input_images) == 3
    assert request.spec is not None and request.spec["task"] == "blend_images"
    assert request.spec["changes"] == "a single tricolour flag"
    assert request.image_config["imageSize"] == "2K"
    # the images arrive in order, each one the colour that was attached
    got: list[tuple[int, ...]] = [
        tuple(Image.open(io.BytesIO(data)).convert("RGB").getpixel((5, 5)))  # type: ignore[arg-type]
        for _mime, data in request.input_images
    ]
    assert all(
        max(abs(a - b) for a, b in zip(pixel, colour, strict=True)) < 8  # re-encoded: close
        for pixel, colour in zip(got, colours, strict=True)
    )
