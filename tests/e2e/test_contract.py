"""The JSON prompt contract through the real bot: strictly typed known keys refused before any Gemini
call, width/height at their real output size, Google's block message shown, labels in any
script on the anchors' contact sheet."""

from __future__ import annotations

import io
import json

from PIL import Image

from tests.e2e.harness import BotHarness
from tests.e2e.test_commands import image_of, public_bot_messages, result_of, wait_private
from tests.e2e.test_resilience import final_message


async def test_a_wrongly_typed_key_is_refused_with_its_path_before_any_call(
    bot_harness: BotHarness,
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    ix = await alice.slash(
        "imagine", prompt='{"task":"generate_image","subject":"a kite","negative_prompt":42}'
    )
    await ix.wait_ack(3)
    message = await wait_private(fake, alice)
    assert (
        "negative_prompt: expected a string or a list of strings, got a number (42); "
        'e.g. "negative_prompt": ["blurry", "watermark"]'
    ) in message.content
    # the same rule on /prompt, for a section given as a number
    await alice.slash("prompt", json=json.dumps({"subject": "a kite", "camera": 42}))
    message = await wait_private(fake, alice, lambda m: "camera:" in m.content)
    assert "camera: expected a string or an object, got a number (42)" in message.content
    assert gemini.requests == []
    assert not public_bot_messages(fake)


async def test_a_string_where_specs_use_one_is_fine(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    spec = {"subject": "a kite", "lighting": "soft morning window light", "camera": "low angle"}
    await result_of(await fake.user("alice").slash("imagine", prompt=json.dumps(spec)))
    sent = gemini.requests[-1].spec
    assert sent is not None and sent["lighting"] == "soft morning window light"


async def test_width_and_height_get_the_smallest_size_that_covers_them(
    bot_harness: BotHarness,
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    spec = {"subject": "a kite poster", "output_format": {"width": 800, "height": 1200}}
    result = await result_of(await fake.user("alice").slash("imagine", prompt=json.dumps(spec)))
    # 2:3 at 1K is really 848×1264, which covers 1200: not 2K
    assert gemini.requests[-1].image_config == {"aspectRatio": "2:3", "imageSize": "1K"}
    assert Image.open(io.BytesIO(image_of(fake, result))).size == (848, 1264)


async def test_a_blocked_image_shows_googles_reason(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    gemini.fail_next(
        "image_safety",
        finish_reason="IMAGE_SAFETY",
        message="The image was filtered out because it may show a real person.",
    )
    failed = await final_message(await fake.user("alice").slash("imagine", prompt="a portrait"))
    assert "blocked the generated image (IMAGE_SAFETY)" in failed.content
    assert "Google says: “The image was filtered out because it may show a real person.”" in (
        failed.content
    )
    assert failed.button_labels == ["Retry"]


async def test_batch_values_in_any_script_label_the_contact_sheet(
    bot_harness: BotHarness,
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    values = ["red kite", "凧あげ", "风筝", "🪁 kite"]
    ix = await fake.user("alice").slash(
        "batch", field="subject.name", values=", ".join(values), json='{"subject": {"name": "x"}}'
    )
    await ix.wait_ack(timeout=3)
    original = ix.record.original_id
    sheet = await fake.wait_for_message(
        predicate=lambda m: m.id == original and m.content.startswith("🗂️"), timeout=30
    )
    assert sorted(r.spec["subject"]["name"] for r in gemini.requests if r.spec) == sorted(values)
    (image,) = sheet.files
    with Image.open(io.BytesIO(fake.attachment_bytes(image))) as im:
        im.load()  # a whole picture: 2×2 tiles, each labelled by its value (CJK too)
        assert im.width > 0
