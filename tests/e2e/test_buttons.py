"""The buttons under a result: Reroll, Refine, Upscale 2K/4K, Prompt, Delete, Cancel — also
after a restart (the custom id carries the generation id; the state is in the database)."""

from __future__ import annotations

import json

from tests.e2e.harness import BotHarness
from tests.e2e.test_commands import (
    RESULT_BUTTONS,
    fields,
    generation_id,
    image_of,
    result_of,
    wait_private,
)
from tests.fakes.discord_state import MessageRecord
from tests.fakes.gemini import fake_mark_of


async def first_result(harness: BotHarness, prompt: str = "a green parrot") -> MessageRecord:
    alice = harness.discord.user("alice")
    return await result_of(await alice.slash("imagine", prompt=prompt, aspect="3:2"))


async def test_reroll_makes_a_new_image_from_the_same_spec(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    first = await first_result(bot_harness)
    bob = fake.user("bob")  # anyone may reroll a public result without private anchors
    again = await result_of(await bob.click(first, "Reroll"))
    assert again.id != first.id and generation_id(again) != generation_id(first)
    assert gemini.requests[-1].spec == gemini.requests[-2].spec
    assert gemini.requests[-1].image_config == gemini.requests[-2].image_config
    assert fake_mark_of(image_of(fake, again)) != fake_mark_of(image_of(fake, first))
    assert again.button_labels == RESULT_BUTTONS


async def test_upscale_2k_rerenders_the_same_image(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    first = await first_result(bot_harness)
    mark = fake_mark_of(image_of(fake, first))
    bigger = await result_of(await fake.user("alice").click(first, "Upscale 2K"))
    request = gemini.requests[-1]
    assert request.image_config == {"aspectRatio": "3:2", "imageSize": "2K"}
    assert request.spec is not None and request.spec["task"] == "edit_image"
    assert [fake_mark_of(data) for _mime, data in request.input_images] == [mark]
    assert fields(bigger)["Size"] == "2K · 3:2"
    assert gemini.issued[-1].width > gemini.issued[0].width


async def test_upscale_4k_over_the_upload_limit_arrives_fitted(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    first = await first_result(bot_harness)
    mark = fake_mark_of(image_of(fake, first))
    big = await result_of(await fake.user("alice").click(first, "Upscale 4K"), within=40)
    request = gemini.requests[-1]
    assert request.image_config["imageSize"] == "4K"
    assert [fake_mark_of(data) for _mime, data in request.input_images] == [mark]
    issued = gemini.issued[-1]
    assert issued.width * issued.height > 12_000_000  # a noisy PNG this size is > 10 MiB
    image = next(f for f in big.files if f.filename.startswith("nano-banana"))
    assert image.size <= fake.upload_limit
    assert fake_mark_of(image_of(fake, big)) == issued.mark  # the same picture, re-encoded
    notes = fields(big).get("Notes", "")
    assert "re-encoded" in notes or "re-compressed" in notes or "downscaled" in notes
    assert fields(big)["Size"].startswith("4K")


async def test_prompt_button_shows_the_json_privately(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    first = await first_result(bot_harness, prompt="a violet comet")
    bob = fake.user("bob")
    ix = await bob.click(first, "Prompt")
    assert await ix.wait_ack(3) == 4
    shown = await ix.original()
    assert shown.ephemeral and shown.visible_to == bob.id
    body = shown.content.removeprefix("```json\n").removesuffix("\n```")
    assert json.loads(body)["subject"] == "a violet comet"


async def test_delete_is_for_the_requester_only(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    first = await first_result(bot_harness)
    bob, alice = fake.user("bob"), fake.user("alice")
    refused = await bob.click(first, "Delete")
    assert await refused.wait_ack(3) == 4
    note = await refused.original()
    assert note.ephemeral and "Only the person who asked" in note.content
    assert not fake.message(first.id).deleted
    done = await alice.click(first, "Delete")
    await done.wait_ack(3)
    await fake._wait(lambda: fake.message(first.id).deleted, 5, "the result to be deleted")
    assert (await wait_private(fake, alice)).content == "Deleted."


async def test_cancel_while_queued(harness: BotHarness) -> None:
    await harness.start(max_concurrent_jobs=1)
    fake, gemini = harness.discord, harness.gemini
    gemini.fail_next("slow", delay=3.0)  # the first job holds the only slot a while
    alice, bob, carol = fake.user("alice"), fake.user("bob"), fake.user("carol")
    running = await alice.slash("imagine", prompt="first, running")
    await fake._wait(
        lambda: running.original_message is not None
        and "Generating" in running.original_message.content,
        5,
        "the first job to run",
    )
    queued = await bob.slash("imagine", prompt="second, to be cancelled")
    third = await carol.slash("imagine", prompt="third, waits its turn")
    await fake.wait_for_message(
        predicate=lambda m: m.id == third.record.original_id and "2nd in line" in m.content,
        timeout=5,
    )
    waiting = await fake.wait_for_message(
        predicate=lambda m: m.id == queued.record.original_id and "Queued" in m.content,
        since=0,
        timeout=5,
    )
    assert "next in line" in waiting.content and waiting.button_labels == ["Cancel"]

    refused = await carol.click(waiting, "Cancel")  # not hers
    assert "Only the person" in (await refused.original()).content
    ix = await bob.click(waiting, "Cancel")
    assert "Cancelled" in (await ix.original()).content
    await fake.wait_for_message(
        predicate=lambda m: m.id == waiting.id and "Cancelled" in m.content, timeout=5
    )
    # carol moves up; the cancelled request never reaches Gemini
    await fake.wait_for_message(
        predicate=lambda m: m.id == third.record.original_id and "next in line" in m.content,
        since=0,
        timeout=5,
    )
    await result_of(running)
    await result_of(third)
    prompts = [str(r.spec["subject"]) for r in gemini.requests if r.spec]
    assert prompts == ["first, running", "third, waits its turn"]
    assert fake.message(waiting.id).buttons == []


async def test_refine_button_opens_a_modal_and_edits_the_image(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    first = await first_result(bot_harness)
    mark = fake_mark_of(image_of(fake, first))
    alice = fake.user("alice")
    ix = await alice.click(first, "Refine")
    assert await ix.wait_ack(3) == 9
    submitted = await alice.submit_modal(ix, {"changes": "give it a tiny hat"})
    refined = await fake.wait_for_message(
        predicate=lambda m: bool(m.embeds) and any(
            f.filename.startswith("nano-banana") for f in m.files
        ) and m.id != first.id,
        timeout=20,
    )
    request = gemini.requests[-1]
    assert "give it a tiny hat" in json.dumps(request.spec)
    # multi-turn: the first turn and the model's answer go back, then the edit of that image
    assert [c.get("role") for c in request.contents] == ["user", "model", "user"]
    assert [fake_mark_of(data) for _mime, data in request.input_images] == [mark]
    assert fake_mark_of(image_of(fake, refined)) == gemini.issued[-1].mark
    assert refined.channel_id == first.id  # in the result's thread (thread id == message id)
    assert "Undo" in refined.button_labels
    # the modal's own answer points to the step in the thread
    await fake._wait(
        lambda: submitted.original_message is not None
        and str(refined.id) in submitted.original_message.content,
        5,
        "a link to the refined image",
    )


async def test_buttons_work_after_a_restart(harness: BotHarness) -> None:
    await harness.start()
    fake, gemini = harness.discord, harness.gemini
    first = await first_result(harness, prompt="an old lantern")
    mark = fake_mark_of(image_of(fake, first))
    await harness.restart()
    alice = fake.user("alice")

    shown = await (await alice.click(first, "Prompt")).original()
    assert "an old lantern" in shown.content
    again = await result_of(await alice.click(first, "Reroll"))
    assert gemini.requests[-1].spec["subject"] == "an old lantern"
    up = await result_of(await alice.click(first, "Upscale 2K"))
    assert [fake_mark_of(d) for _m, d in gemini.requests[-1].input_images] == [mark]
    assert fields(up)["Size"] == "2K · 3:2"
    # the new results' buttons carry their own generation ids
    assert len({generation_id(first), generation_id(again), generation_id(up)}) == 3
    refused = await fake.user("bob").click(first, "Delete")
    assert "Only the person" in (await refused.original()).content

