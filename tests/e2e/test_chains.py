"""Chains end to end: reply to refine, a thread per chain, branches, Undo, restarts, two users,
extra attachments, retention, no-thread channels, the Refine button and the Edit image menu.

The real bot runs between the loopback fake Discord and the fake Gemini; the fake Gemini
rejects any model turn whose thought signatures are not exactly the ones it issued.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import re
import time
from typing import Any

from PIL import Image

from tests.e2e.conftest import png_bytes
from tests.e2e.harness import BotHarness
from tests.fakes.discord_driver import FakeUser, Upload
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import MessageRecord
from tests.fakes.gemini import FakeGemini, FakeRequest, b64decode_any, fake_mark_of

RESULT_TIMEOUT = 20


# ---------------------------------------------------------------------------------- helpers


def is_result(m: MessageRecord) -> bool:
    return bool(m.embeds) and any(f.filename.startswith("nano-banana") for f in m.files)


def field(m: MessageRecord, name: str) -> str | None:
    for f in (m.embed or {}).get("fields") or []:
        if f.get("name") == name:
            return str(f.get("value"))
    return None


def step_of(m: MessageRecord) -> str | None:
    return field(m, "Chain step")


def mark_of(fake: FakeDiscord, m: MessageRecord) -> str | None:
    image = next(f for f in m.files if f.filename.startswith("nano-banana"))
    return fake_mark_of(fake.attachment_bytes(image))


def prompt_json(fake: FakeDiscord, m: MessageRecord) -> dict[str, Any]:
    spec_file = next(f for f in m.files if f.filename == "prompt.json")
    data = json.loads(fake.attachment_bytes(spec_file))
    assert isinstance(data, dict)
    return data


def part_image(part: dict[str, Any]) -> bytes | None:
    blob = part.get("inlineData")
    return b64decode_any(str(blob.get("data", ""))) if blob else None


def images_in(content: dict[str, Any], *, thoughts: bool = False) -> list[bytes]:
    out = []
    for part in content.get("parts") or []:
        data = part_image(part)
        if data is not None and (thoughts or not part.get("thought")):
            out.append(data)
    return out


def marks_in(content: dict[str, Any]) -> list[str | None]:
    return [fake_mark_of(data) for data in images_in(content)]


async def imagine(fake: FakeDiscord, user: FakeUser, prompt: str) -> MessageRecord:
    ix = await user.slash("imagine", prompt=prompt)
    await ix.wait_ack(timeout=3)
    return await fake.wait_for_message(predicate=is_result, timeout=RESULT_TIMEOUT)


async def next_result(
    fake: FakeDiscord, channel: int | str, *, since: int | None = None
) -> MessageRecord:
    # by predicate: a chain's thread may not exist yet when we start waiting
    channel_id = fake.channel(channel) if isinstance(channel, str) else channel
    return await fake.wait_for_message(
        predicate=lambda m: is_result(m) and m.channel_id == channel_id,
        timeout=RESULT_TIMEOUT,
        since=since,
    )


def last_ok_request(gemini: FakeGemini) -> FakeRequest:
    request = gemini.requests[-1]
    assert request.status == 200, (request.status, request.fault)
    return request


def assert_alternates(contents: list[dict[str, Any]]) -> None:
    roles = [c.get("role") or "user" for c in contents]
    assert roles[0] == "user" and roles[-1] == "user", roles
    for a, b in itertools.pairwise(roles):
        assert a != b, roles


def assert_model_turns_signed(gemini: FakeGemini, contents: list[dict[str, Any]]) -> None:
    """Every model turn is one the fake issued, with its signatures byte for byte."""
    issued = [i.signatures for i in gemini.issued]
    for content in contents:
        if content.get("role") != "model":
            continue
        parts = content.get("parts") or []
        sent = [
            b64decode_any(p["thoughtSignature"]) if p.get("thoughtSignature") else None
            for p in parts
        ]
        assert sent in issued, "a model turn was not sent back exactly as issued"
        for part in parts:
            if "inlineData" in part and not part.get("thought"):
                assert part.get("thoughtSignature"), "image part without its signature"


def generation_id(m: MessageRecord) -> int:
    footer = ((m.embed or {}).get("footer") or {}).get("text") or ""
    found = re.search(r"#(\d+)", footer)
    assert found, f"no generation id in {footer!r}"
    return int(found.group(1))


async def until_recorded(harness: BotHarness, result: MessageRecord) -> None:
    """Until the bot has recorded that `result` shows its generation (the job's last act)."""
    assert harness.bot is not None
    bot, gid = harness.bot, generation_id(result)
    async with asyncio.timeout(5):
        while True:
            gen = await bot.store.get_generation(gid)
            shown = gen is not None and gen.message_id == result.id
            if shown and not bot.generator.active():
                return
            await asyncio.sleep(0.02)


async def start_chain(
    harness: BotHarness, prompt: str = "a lighthouse on a cliff at dusk"
) -> tuple[MessageRecord, MessageRecord, int]:
    """/imagine, then a reply to the result: returns (root result, step-1 result, thread id)."""
    fake = harness.discord
    alice = fake.user("alice")
    root = await imagine(fake, alice, prompt)
    await alice.reply(root, "make it night")
    step1 = await next_result(fake, root.id)  # the thread has the result message's id
    return root, step1, root.id


# ---------------------------------------------------------------------------------- tests


async def test_three_steps_send_a_bounded_signed_history(harness: BotHarness) -> None:
    await harness.start(chain_history_steps=2)
    fake, gemini = harness.discord, harness.gemini
    alice = fake.user("alice")
    root, step1, thread = await start_chain(harness)
    assert step_of(step1) == "1 (from step 0)"

    await alice.say(thread, "add fog rolling in from the sea")
    step2 = await next_result(fake, thread)
    assert step_of(step2) == "2 (from step 1)"
    r2 = last_ok_request(gemini)
    # window [root, step 1]: it starts at the chain's start
    assert [c.get("role") for c in r2.contents] == ["user", "model", "user", "model", "user"]

    await alice.say(thread, "add a small fishing boat")
    step3 = await next_result(fake, thread)
    assert step_of(step3) == "3 (from step 2)"
    r3 = last_ok_request(gemini)
    contents = r3.contents
    assert_alternates(contents)
    # bounded: the last 2 steps (step 1 and step 2) and the new turn, not the whole chain
    assert len(contents) == 5
    assert_model_turns_signed(gemini, contents)
    marks = [mark_of(fake, m) for m in (root, step1, step2)]
    # the window starts mid-chain with a user turn carrying the image step 1 edited
    assert marks_in(contents[0]) == [marks[0]]
    assert marks_in(contents[1]) == [marks[1]]
    assert marks_in(contents[2]) == []  # step 2's image to edit is the model turn before it
    assert marks_in(contents[3]) == [marks[2]]
    assert marks_in(contents[4]) == [marks[2]]  # chain:latest
    spec = r3.spec
    assert spec is not None and spec["task"] == "edit_image"
    assert spec["changes"] == "add a small fishing boat"
    assert [i["role"] for i in spec["inputs"]] == ["edit_target"]
    assert spec["chain_id"]
    # the spec as recorded (prompt.json) names the chain's image
    recorded = prompt_json(fake, step3)
    assert recorded["task"] == "edit_image" and recorded["chain_id"] == spec["chain_id"]
    assert [i["data"] for i in recorded["inputs"]] == ["chain:latest"]
    # every step went over real multi-turn requests the fake verified
    assert all(r.status == 200 for r in gemini.requests)


async def test_reply_outside_thread_creates_the_thread_on_the_result(
    bot_harness: BotHarness,
) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    root = await imagine(fake, alice, "a red fox in the snow")
    await alice.reply(root, "give the fox a scarf")
    step1 = await next_result(fake, root.id)
    threads = [t for t in fake.threads if t.id == root.id]
    assert threads, "no thread on the result message"
    thread = threads[0]
    assert thread.parent_id == fake.channel("general")
    assert "red fox in the snow" in thread.name
    assert step1.channel_id == thread.id
    assert step_of(step1) == "1 (from step 0)"
    assert "Undo" in step1.button_labels
    request = last_ok_request(bot_harness.gemini)
    assert marks_in(request.last_content) == [mark_of(fake, root)]
    # a second refinement of the same result uses the same thread
    await alice.reply(root, "now make it summer")
    again = await next_result(fake, thread.id)
    assert step_of(again) == "1 (from step 0)"  # a branch from the root
    assert len([t for t in fake.threads if t.parent_id == fake.channel("general")]) == 1


async def test_reply_to_an_older_result_in_the_thread_branches(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    _root, step1, thread = await start_chain(bot_harness)
    await alice.say(thread, "add stars")
    step2 = await next_result(fake, thread)
    assert step_of(step2) == "2 (from step 1)"

    await alice.reply(step1, "make the lighthouse red instead")
    branch = await next_result(fake, thread)
    assert step_of(branch) == "2 (from step 1)"
    assert branch.reference_id is not None
    request = last_ok_request(gemini)
    assert marks_in(request.last_content) == [mark_of(fake, step1)]
    # the history is step 1's lineage, not the abandoned step 2
    history_marks = [m for c in request.contents[:-1] for m in marks_in(c)]
    assert mark_of(fake, step2) not in history_marks
    assert marks_in(request.contents[-2]) == [mark_of(fake, step1)]
    # the branch is the head now: a plain message edits it
    await alice.say(thread, "and a rainbow")
    step3 = await next_result(fake, thread)
    assert step_of(step3) == "3 (from step 2)"
    assert marks_in(last_ok_request(gemini).last_content) == [mark_of(fake, branch)]


async def test_undo_moves_the_head_back(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    _root, step1, thread = await start_chain(bot_harness)
    await alice.say(thread, "add a whale")
    step2 = await next_result(fake, thread)

    ix = await alice.click(step2, "Undo")
    await ix.wait_ack(timeout=3)
    answer = await fake.wait_for_message(
        channel=thread, predicate=lambda m: "Undone" in m.content, timeout=10
    )
    assert "step 1" in answer.content

    await alice.say(thread, "add seagulls")
    step = await next_result(fake, thread)
    assert step_of(step) == "2 (from step 1)"
    assert marks_in(last_ok_request(gemini).last_content) == [mark_of(fake, step1)]

    # Undo twice more: back to the root, then nothing left to undo
    ix = await alice.click(step, "Undo")
    await fake.wait_for_message(channel=thread, predicate=lambda m: "step 1" in m.content)
    ix = await alice.click(step, "Undo")
    await fake.wait_for_message(channel=thread, predicate=lambda m: "step 0" in m.content)
    ix = await alice.click(step, "Undo")
    refusal = await fake.wait_for_message(ephemeral=True, timeout=10)
    assert "Nothing to undo" in refusal.content
    # someone else cannot undo alice's chain
    ix = await fake.user("bob").click(step, "Undo")
    refusal = await fake.wait_for_message(ephemeral=True, timeout=10)
    assert "owner" in refusal.content
    assert ix.acked


async def test_chain_continues_after_a_restart(harness: BotHarness) -> None:
    await harness.start()
    fake, gemini = harness.discord, harness.gemini
    alice = fake.user("alice")
    _root, step1, thread = await start_chain(harness)
    await until_recorded(harness, step1)

    await harness.restart()
    await alice.say(thread, "add snow on the rocks")
    step2 = await next_result(fake, thread)
    assert step_of(step2) == "2 (from step 1)"
    request = last_ok_request(gemini)
    assert_alternates(request.contents)
    assert_model_turns_signed(gemini, request.contents)
    assert marks_in(request.contents[-2]) == [mark_of(fake, step1)]
    assert marks_in(request.last_content) == [mark_of(fake, step1)]
    # the buttons of an old result still work after the restart
    ix = await alice.click(step2, "Undo")
    await ix.wait_ack(timeout=3)
    await fake.wait_for_message(channel=thread, predicate=lambda m: "Undone" in m.content)


async def test_two_users_in_one_thread_are_serialised(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    _root, step1, thread = await start_chain(bot_harness)
    mark = fake.event_mark
    first_request = len(gemini.requests)
    gemini.latency = 0.4
    alice, bob = fake.user("alice"), fake.user("bob")
    # the first message carries an attachment (slower to prepare) and must still go first
    a_msg = await alice.say(thread, "add a hat", files=[Upload("hat.png", png_bytes(48, 48))])
    b_msg = await bob.say(thread, "make it night")

    def answer_to(msg: MessageRecord) -> Any:
        return lambda m: is_result(m) and m.reference_id == msg.id

    a_result = await fake.wait_for_message(
        channel=thread, predicate=answer_to(a_msg), since=mark, timeout=RESULT_TIMEOUT
    )
    b_result = await fake.wait_for_message(
        channel=thread, predicate=answer_to(b_msg), since=mark, timeout=RESULT_TIMEOUT
    )
    assert step_of(a_result) == "2 (from step 1)"
    assert step_of(b_result) == "3 (from step 2)"
    requests = gemini.requests[first_request:]
    assert len(requests) == 2 and all(r.status == 200 for r in requests)
    assert gemini.max_in_flight == 1  # never two steps of one chain at once
    assert marks_in(requests[0].last_content)[0] == mark_of(fake, step1)
    # the second is built on the first
    assert marks_in(requests[1].last_content) == [mark_of(fake, a_result)]


async def test_different_chains_run_in_parallel(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, bob = fake.user("alice"), fake.user("bob")
    a_root = await imagine(fake, alice, "a castle")
    b_root = await imagine(fake, bob, "a spaceship")
    gemini.latency = 0.6
    mark = fake.event_mark
    await alice.reply(a_root, "add a moat")
    await bob.reply(b_root, "add engines glowing blue")
    await next_result(fake, a_root.id, since=mark)
    await next_result(fake, b_root.id, since=mark)
    assert gemini.max_in_flight == 2


async def test_extra_attachment_becomes_an_input(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    _root, step1, thread = await start_chain(bot_harness)
    hat = png_bytes(80, 60, (20, 200, 20))
    await alice.say(thread, "put this hat on the lighthouse", files=[Upload("hat.png", hat)])
    step2 = await next_result(fake, thread)
    assert step_of(step2) == "2 (from step 1)"
    request = last_ok_request(gemini)
    images = images_in(request.last_content)
    assert len(images) == 2
    assert fake_mark_of(images[0]) == mark_of(fake, step1)
    extra = Image.open(io.BytesIO(images[1]))
    assert extra.size == (80, 60)
    pixel = extra.convert("RGB").getpixel((5, 5))
    assert isinstance(pixel, tuple)
    assert all(abs(a - b) <= 4 for a, b in zip(pixel, (20, 200, 20), strict=True))
    spec = request.spec
    assert spec is not None
    assert [i["role"] for i in spec["inputs"]] == ["edit_target", "reference"]
    recorded = prompt_json(fake, step2)
    assert [i["data"] for i in recorded["inputs"]] == ["chain:latest", "attachment:1"]
    # an image with no text is a step too
    await alice.say(thread, "", files=[Upload("hat2.png", hat)])
    step3 = await next_result(fake, thread)
    assert step_of(step3) == "3 (from step 2)"


async def test_a_chain_past_retention_gets_a_clear_message(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    bot = bot_harness.bot
    assert bot is not None
    alice = fake.user("alice")
    _root, _step1, thread = await start_chain(bot_harness)
    days = bot.settings.image_retention_days
    purged = await bot.store.purge_expired_images(
        retention_days=days, now=time.time() + (days + 10) * 86_400
    )
    assert purged > 0
    calls = len(gemini.requests)
    await alice.say(thread, "make it brighter")
    answer = await fake.wait_for_message(
        channel=thread, predicate=lambda m: "retention" in m.content, timeout=10
    )
    assert f"{days}-day retention" in answer.content
    assert len(gemini.requests) == calls  # nothing was sent, nothing charged


async def test_refining_a_days_old_result_within_retention(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    bot = bot_harness.bot
    assert bot is not None
    alice = fake.user("alice")
    root = await imagine(fake, alice, "an old mill")
    # a retention pass a week later keeps what is younger than the retention period
    await bot.store.purge_expired_images(
        retention_days=bot.settings.image_retention_days, now=time.time() + 7 * 86_400
    )
    await alice.reply(root, "add a river")
    step1 = await next_result(fake, root.id)
    assert step_of(step1) == "1 (from step 0)"


async def test_threads_disallowed_continue_as_replies_said_once(harness: BotHarness) -> None:
    await harness.start()
    fake = harness.discord
    fake.set_thread_creation_allowed(False)
    alice = fake.user("alice")
    general = fake.channel("general")
    root = await imagine(fake, alice, "a windmill in a tulip field")
    ask1 = await alice.reply(root, "make the tulips purple")
    step1 = await next_result(fake, general)
    assert step1.reference_id == ask1.id
    assert step_of(step1) == "1 (from step 0)"
    ask2 = await alice.reply(step1, "add clouds")
    step2 = await next_result(fake, general)
    assert step2.reference_id == ask2.id
    assert step_of(step2) == "2 (from step 1)"
    # still said only once after a restart, and still in place
    await until_recorded(harness, step2)
    await harness.restart()
    ask3 = await alice.reply(step2, "add a rainbow")
    step3 = await next_result(fake, general)
    assert step3.reference_id == ask3.id
    assert step_of(step3) == "3 (from step 2)"
    notices = [
        m
        for m in fake.messages_in("general")
        if m.author.id == fake.bot_user.id and "continues as replies" in m.content
    ]
    assert len(notices) == 1
    assert notices[0].reference_id == ask1.id
    assert not fake.threads


async def test_refine_button_opens_a_modal_then_steps(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    root = await imagine(fake, alice, "a teapot on a table")
    ix = await alice.click(root, "Refine")
    await ix.wait_ack(timeout=3)
    assert ix.modal is not None
    submitted = await alice.submit_modal(ix, {"changes": "make the teapot blue"})
    step1 = await next_result(fake, root.id)
    assert step_of(step1) == "1 (from step 0)"
    spec = last_ok_request(gemini).spec
    assert spec is not None and spec["changes"] == "make the teapot blue"
    # the modal's own answer points to the thread, then to the result
    original = await submitted.original(timeout=10)
    assert f"<#{root.id}>" in original.content

    def linked(m: MessageRecord) -> bool:
        return m.id == original.id and "ready" in m.content

    await fake.wait_for_message(predicate=linked, timeout=10)
    # the Refine button inside the thread answers in place
    ix = await alice.click(step1, "Refine")
    submitted = await alice.submit_modal(ix, {"changes": "add steam"})
    step2 = await next_result(fake, root.id)
    assert step_of(step2) == "2 (from step 1)"


async def test_edit_image_menu_on_a_result_steps(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    root = await imagine(fake, alice, "a bicycle leaning on a wall")
    ix = await alice.context_menu("Edit image", root)
    await ix.wait_ack(timeout=3)
    assert ix.modal is not None
    await alice.submit_modal(ix, {"changes": "paint the wall yellow"})
    step1 = await next_result(fake, root.id)
    assert step_of(step1) == "1 (from step 0)"
    request = last_ok_request(gemini)
    assert marks_in(request.last_content) == [mark_of(fake, root)]
    assert [c.get("role") for c in request.contents] == ["user", "model", "user"]


async def test_plain_messages_outside_chains_are_ignored(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, bob = fake.user("alice"), fake.user("bob")
    root = await imagine(fake, alice, "a mountain lake")
    calls = len(gemini.requests)
    note = await bob.say("general", "nice picture")
    await alice.reply(note, "thanks")
    await alice.reply(root, "// just a note, not an edit")
    # a real step afterwards proves the bot read (and skipped) the messages before it
    await alice.reply(root, "add a canoe")
    await next_result(fake, root.id)
    assert len(gemini.requests) == calls + 1
    assert re.search("canoe", str(gemini.requests[-1].spec))


async def test_history_is_trimmed_to_the_models_image_limit(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    _root, _step1, thread = await start_chain(bot_harness)
    many = [Upload(f"ref{i}.png", png_bytes(32, 32, (i * 20, 90, 90))) for i in range(10)]
    await alice.say(thread, "use these as colour references", files=many)
    await next_result(fake, thread)
    r2 = last_ok_request(gemini)
    assert len(images_in(r2.last_content)) == 11  # the chain's image and the ten attachments
    await alice.say(thread, "and these", files=many[:4])
    step3 = await next_result(fake, thread)
    assert step_of(step3) == "3 (from step 2)"
    r3 = last_ok_request(gemini)  # the fake refuses more than 14 user images in a request
    user_images = sum(len(images_in(c)) for c in r3.contents if c.get("role") == "user")
    assert user_images <= 14
    assert_alternates(r3.contents)
    assert_model_turns_signed(gemini, r3.contents)
