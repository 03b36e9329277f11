"""/describe and Describe as JSON end to end: the real bot, the fake Discord and the fake
Gemini's text model (structured output), then Generate, Generate with this image and Edit spec
from the answer, also after a restart."""

from __future__ import annotations

import json

from tests.e2e.conftest import png_bytes
from tests.e2e.harness import BotHarness
from tests.e2e.test_commands import result_of, wait_private
from tests.fakes.discord_driver import FakeInteraction, Upload
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import MessageRecord
from tests.fakes.gemini import fake_mark_of, render_png

DESCRIBE_BUTTONS = ["Generate", "Generate with this image", "Edit spec"]
TEXT_MODEL = "gemini-3.8-flash"
MARK = "fake-31337"


def picture(width: int = 640, height: int = 360) -> bytes:
    """A marked photo-like picture (the fake reads the mark back from what it is sent)."""
    return render_png(width, height, MARK)


async def answer_of(ix: FakeInteraction, *, within: float = 15) -> MessageRecord:
    """The describe's answer: the response message once it has content (spec or failure)."""
    await ix.wait_ack(3)
    await ix.fake._wait(
        lambda: ix.original_message is not None
        and bool(ix.original_message.content)
        and not ix.original_message.loading,
        within,
        "the describe answer",
    )
    message = ix.original_message
    assert message is not None
    return message


def described_spec(fake: FakeDiscord, message: MessageRecord) -> dict[str, object]:
    att = next(f for f in message.files if f.filename == "describe.json")
    data: dict[str, object] = json.loads(fake.attachment_bytes(att))
    return data


async def describe(h: BotHarness, user: str = "alice", **options: object) -> MessageRecord:
    who = h.discord.user(user)
    options.setdefault("image", Upload("photo.png", picture()))
    return await answer_of(await who.slash("describe", **options))


async def test_describe_then_generate(bot_harness: BotHarness) -> None:
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    assert h.bot is not None
    answer = await describe(h, detail="full")
    lines = answer.content.split("\n")
    assert lines[0].startswith("🔎 ") and MARK in lines[0]
    assert len(lines) == 3 and lines[2].startswith("-# describe #")
    assert answer.button_labels == DESCRIBE_BUTTONS
    assert answer.attachment_names == ["describe.json"]
    spec = described_spec(fake, answer)
    assert spec["task"] == "generate_image"
    assert spec["output_format"] == {"aspect_ratio": "16:9"}  # the picture's shape

    # one structured-output call to the text model, with the picture
    [call] = gemini.requests
    assert call.model == TEXT_MODEL
    assert call.generation_config["responseMimeType"] == "application/json"
    assert "full" not in call.texts[0] and "exhaustive" in call.texts[0].lower()
    assert gemini.text_issued[-1].input_marks == [MARK]

    # recorded and charged (no images), like any call
    [row] = await h.bot.store.recent_generations(fake.user("alice").id, limit=1)
    assert row.kind == "describe" and row.status == "done" and row.cost > 0
    assert row.spec == spec and len(row.input_images) == 1
    usage = await h.bot.store.reserved_today(user_id=fake.user("alice").id, guild_id=None)
    assert usage.images == 0 and abs(usage.cost - row.cost) < 1e-9

    # Generate runs the spec as it is
    result = await result_of(await fake.user("alice").click(answer, "Generate"))
    request = gemini.requests[-1]
    assert request.model != TEXT_MODEL and request.spec is not None
    assert request.spec["subject"] == spec["subject"]
    assert request.image_config["aspectRatio"] == "16:9"
    assert request.input_images == []
    assert result.attachment_names[-1] == "prompt.json"


async def test_generate_with_this_image_sends_it_as_a_reference(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    answer = await describe(bot_harness)
    bob = fake.user("bob")  # anyone who sees a public description may use it
    await result_of(await bob.click(answer, "Generate with this image"))
    request = gemini.requests[-1]
    assert request.spec is not None
    assert request.spec["inputs"] == [{"type": "image", "data": "image 1", "role": "reference"}]
    assert [fake_mark_of(data) for _mime, data in request.input_images] == [MARK]


async def test_edit_spec_opens_the_editor_prefilled(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    answer = await describe(bot_harness)
    alice = fake.user("alice")
    ix = await alice.click(answer, "Edit spec")
    await ix.wait_ack(3)
    assert ix.modal is not None and ix.response_type == 9
    prefilled = json.loads(_modal_default(ix.modal))
    assert prefilled == described_spec(fake, answer)
    prefilled["style"] = "pencil sketch"
    await result_of(await alice.submit_modal(ix, {"prompt_json": json.dumps(prefilled)}))
    assert gemini.requests[-1].spec is not None
    assert gemini.requests[-1].spec["style"] == "pencil sketch"


def _modal_default(modal: dict[str, object]) -> str:
    def walk(node: object) -> str | None:
        if isinstance(node, dict):
            if node.get("custom_id") == "prompt_json":
                return str(node.get("value"))
            for child in node.values():
                found = walk(child)
                if found is not None:
                    return found
        if isinstance(node, list):
            for child in node:
                found = walk(child)
                if found is not None:
                    return found
        return None

    found = walk(modal)
    assert found is not None, modal
    return found


async def test_non_images_and_oversized_files_are_refused_before_any_call(
    harness: BotHarness,
) -> None:
    await harness.start(max_attachment_bytes=50_000)
    fake, gemini = harness.discord, harness.gemini
    alice = fake.user("alice")
    ix = await alice.slash(
        "describe", image=Upload("notes.txt", b"hello there", content_type="text/plain")
    )
    assert await ix.wait_ack(3) == 4
    note = await wait_private(fake, alice)
    assert "notes.txt is not an image" in note.content
    big = png_bytes(1200, 1200)
    big += b"\0" * max(0, 60_000 - len(big))
    ix = await alice.slash("describe", image=Upload("huge.png", big))
    assert await ix.wait_ack(3) == 4
    note = await wait_private(fake, alice, lambda m: "huge.png" in m.content)
    assert "the limit is 0.1 MB" in note.content or "limit is" in note.content
    # an image in name only: downloaded, found out, refused, still before any call
    ix = await alice.slash(
        "describe", image=Upload("fake.png", b"GIF89a but not really", content_type="image/png")
    )
    await ix.wait_ack(3)
    await wait_private(fake, alice, lambda m: "fake.png" in m.content)
    assert gemini.requests == []
    assert harness.bot is not None
    assert await harness.bot.store.recent_generations(alice.id) == []


async def test_invalid_json_is_retried_once_then_explained(bot_harness: BotHarness) -> None:
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    assert h.bot is not None
    gemini.answer_next_text('{"task": "generate_image", "subject": "a fox", ')
    answer = await describe(h)
    assert answer.button_labels == DESCRIBE_BUTTONS
    assert len(gemini.requests) == 2
    retry = gemini.requests[1]
    assert [c["role"] for c in retry.contents] == ["user", "model", "user"]
    assert "not valid JSON" in retry.texts[0]

    # twice unusable: a clear message, a Retry button, nothing charged
    gemini.answer_next_text("not JSON")
    gemini.answer_next_text({"task": "generate_image", "subject": "a fox", "lighting": 7})
    failed = await describe(h)
    assert failed.content.startswith("❌ Gemini's description was not a usable spec")
    assert "lighting" in failed.content
    assert failed.button_labels == ["Retry"] and failed.attachment_names == []
    [row, *_] = await h.bot.store.recent_generations(fake.user("alice").id, limit=1)
    assert row.status == "failed" and row.error_kind == "bad_answer"
    charged = await h.bot.store.reserved_today(user_id=fake.user("alice").id, guild_id=None)
    assert charged.cost == (await h.bot.store.get_generation(row.id - 1)).cost  # type: ignore[union-attr]

    # Retry describes the same image again
    again = await answer_of(await fake.user("alice").click(failed, "Retry"))
    assert again.button_labels == DESCRIBE_BUTTONS
    assert gemini.text_issued[-1].input_marks == [MARK]


async def test_rate_limits_and_blocks_are_explained(bot_harness: BotHarness) -> None:
    gemini = bot_harness.gemini
    gemini.fail_next("rate_limit", times=3, retry_delay="0.05s")
    busy = await describe(bot_harness)
    assert busy.content.startswith("❌ Gemini is busy (rate limit reached).")
    gemini.fail_next("prompt_blocked", reason="PROHIBITED_CONTENT")
    blocked = await describe(bot_harness)
    assert blocked.content.startswith("🚫 Google blocked the request (PROHIBITED_CONTENT)")
    gemini.fail_next("overloaded", times=3)
    overloaded = await describe(bot_harness)
    assert "overloaded" in overloaded.content
    assert blocked.button_labels == ["Retry"]


async def test_quota_is_checked_before_the_call(harness: BotHarness) -> None:
    await harness.start(default_daily_dollars_per_user=0.0001)
    fake = harness.discord
    alice = fake.user("alice")
    ix = await alice.slash("describe", image=Upload("photo.png", picture()))
    assert await ix.wait_ack(3) == 4
    note = await wait_private(fake, alice)
    assert "daily budget" in note.content
    assert harness.gemini.requests == []


async def test_describe_as_json_menu(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    posted = await alice.say("general", "look at this", files=[Upload("p.png", picture(400, 600))])
    answer = await answer_of(await alice.context_menu("Describe as JSON", posted))
    assert answer.button_labels == DESCRIBE_BUTTONS
    assert described_spec(fake, answer)["output_format"] == {"aspect_ratio": "2:3"}
    assert gemini.text_issued[-1].input_marks == [MARK]

    # on a bot result: its stored original
    result = await result_of(await alice.click(answer, "Generate"))
    mark = gemini.issued[-1].mark
    await answer_of(await alice.context_menu("Describe as JSON", result))
    assert gemini.text_issued[-1].input_marks == [mark]

    text_only = await alice.say("general", "no picture")
    await alice.context_menu("Describe as JSON", text_only)
    note = await wait_private(fake, alice, lambda m: "no image" in m.content)
    assert "no image to describe" in note.content


async def test_describe_buttons_work_after_a_restart(bot_harness: BotHarness) -> None:
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    answer = await describe(h)
    await h.restart()
    await result_of(await fake.user("alice").click(answer, "Generate with this image"))
    assert [fake_mark_of(d) for _m, d in gemini.requests[-1].input_images] == [MARK]
    ix = await fake.user("alice").click(answer, "Edit spec")
    await ix.wait_ack(3)
    assert ix.modal is not None
