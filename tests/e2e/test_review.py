"""Bugs found in a senior review of the whole bot, each pinned by an end-to-end test."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import pytest

from tests.e2e.conftest import png_bytes
from tests.e2e.harness import BotHarness
from tests.fakes.discord_driver import Upload
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import MessageRecord

RESULT_TIMEOUT = 20


def is_result(m: MessageRecord) -> bool:
    return bool(m.embeds) and any(f.filename.startswith("nano-banana") for f in m.files)


async def imagine(fake: FakeDiscord, user_name: str, prompt: str, **options: Any) -> MessageRecord:
    user = fake.user(user_name)
    ix = await user.slash("imagine", prompt=prompt, **options)
    await ix.wait_ack(timeout=3)
    return await fake.wait_for_message(predicate=is_result, timeout=RESULT_TIMEOUT)


async def test_refine_modal_answers_an_unexpected_error(
    bot_harness: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error after the Refine modal deferred must not leave "thinking…"
    forever: the modal needs an on_error that answers privately."""
    fake = bot_harness.discord
    bot = bot_harness.bot
    assert bot is not None
    alice = fake.user("alice")
    root = await imagine(fake, "alice", "a kettle on a stove")

    async def broken(*_args: Any, **_kwargs: Any) -> int:
        raise RuntimeError("simulated bug")

    bot.chains.run_step = broken  # type: ignore[method-assign]
    ix = await alice.click(root, "Refine")
    await ix.wait_ack(timeout=3)
    caplog.set_level(logging.ERROR)
    submitted = await alice.submit_modal(ix, {"changes": "make it red"})
    await submitted.wait_ack(timeout=3)
    reply = await fake.wait_for_message(
        predicate=lambda m: "went wrong" in m.content, ephemeral=True, timeout=5
    )
    assert reply.visible_to == alice.id
    loading = [m for m in fake.state.messages.values() if m.loading and not m.deleted]
    assert loading == [], [m.content for m in loading]


async def test_undo_in_a_private_chain_stays_private(bot_harness: BotHarness) -> None:
    """Undo under a private (ephemeral) chain step must not announce it in the channel."""
    fake = bot_harness.discord
    alice = fake.user("alice")
    root = await imagine(fake, "alice", "a secret lamp", private=True)
    assert root.ephemeral
    ix = await alice.click(root, "Refine")
    await ix.wait_ack(timeout=3)
    await alice.submit_modal(ix, {"changes": "make it green"})
    step = await fake.wait_for_message(
        predicate=lambda m: is_result(m) and "Undo" in m.button_labels, timeout=RESULT_TIMEOUT
    )
    assert step.ephemeral
    public_before = {m.id for m in fake.messages_in("general")}
    undo = await alice.click(step, "Undo")
    await undo.wait_ack(timeout=3)
    answer = await fake.wait_for_message(predicate=lambda m: "Undone" in m.content, timeout=5)
    assert answer.ephemeral, "a private chain's Undo was announced publicly"
    public_after = {m.id for m in fake.messages_in("general")}
    assert public_after == public_before


async def test_reroll_of_a_chain_step_never_resends_someone_elses_anchor(
    bot_harness: BotHarness,
) -> None:
    """Reroll on a plain chain step re-sends the chain's history; when an earlier step used
    the chain owner's private anchor, someone else's reroll must be refused (as a reply in
    the chain is), not send her face to the model for him."""
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    alice, bob = fake.user("alice"), fake.user("bob")
    ix = await alice.slash(
        "anchor save", name="kestrel", image=Upload("k.png", png_bytes(96, 128, (200, 40, 40)))
    )
    await ix.wait_ack(3)
    await fake.wait_for_message(predicate=lambda m: "Saved anchor" in m.text, timeout=10)
    assert h.bot is not None
    anchor = await h.bot.store.get_anchor(alice.id, "kestrel")
    assert anchor is not None
    stored = await h.bot.store.get_image(anchor.image_sha)
    assert stored is not None
    face = base64.b64encode(stored[0]).decode()

    first = await imagine(fake, "alice", "a portrait in a garden", anchors="kestrel")
    await alice.reply(first, "make the sky pink")
    step = await fake.wait_for_message(
        predicate=lambda m: is_result(m) and "Chain step" in json.dumps(m.embeds),
        timeout=RESULT_TIMEOUT,
    )
    calls = len(gemini.requests)
    ix = await bob.click(step, "Reroll")
    await ix.wait_ack(3)
    await fake.wait_for_message(
        predicate=lambda m: m.visible_to == bob.id and "anchor" in m.text, timeout=10
    )
    for request in gemini.requests[calls:]:
        assert face not in json.dumps(request.body), "Alice's anchor was sent for Bob"


async def test_history_id_never_reposts_another_servers_image(bot_harness: BotHarness) -> None:
    """Generation ids are small sequential numbers: /history id:N by someone else must not
    re-post a public image from another server (anyone could page through all of them)."""
    h, fake = bot_harness, bot_harness.discord
    bob = fake.user("bob")
    first = await imagine(fake, "alice", "a lighthouse at dusk")
    assert h.bot is not None
    gen = await h.bot.store.generation_by_message(first.id)
    assert gen is not None and gen.public
    # As if it had been made in another server the bot is in.
    async with h.bot.store.database.transaction() as tx:
        await tx.execute("UPDATE generations SET guild_id = ? WHERE id = ?", (4242, gen.id))
    public_before = {m.id for m in fake.messages_in("general")}
    ix = await bob.slash("history", id=gen.id)
    await ix.wait_ack(3)
    await fake.wait_for_message(
        predicate=lambda m: m.visible_to == bob.id and f"#{gen.id}" in m.text, timeout=10
    )
    assert {m.id for m in fake.messages_in("general")} == public_before
    assert not any(
        is_result(m) and m.visible_to == bob.id for m in fake.state.messages.values()
    )


async def test_delete_removes_a_private_result(bot_harness: BotHarness) -> None:
    """An ephemeral result can only be deleted through its interaction, not the channel."""
    fake = bot_harness.discord
    alice = fake.user("alice")
    result = await imagine(fake, "alice", "a private teapot", private=True)
    assert result.ephemeral
    ix = await alice.click(result, "Delete")
    await ix.wait_ack(timeout=3)
    deadline = asyncio.get_running_loop().time() + 5
    while not fake.state.messages[result.id].deleted:
        assert asyncio.get_running_loop().time() < deadline, "the private result was not deleted"
        await asyncio.sleep(0.05)
    assert not [m for m in alice.ephemeral_messages() if "could not delete" in m.content]


async def test_unexpected_error_in_a_chain_message_is_answered(
    bot_harness: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain message in a chain that hits a bug gets a reply with a reference, not silence."""
    fake = bot_harness.discord
    bot = bot_harness.bot
    assert bot is not None
    alice = fake.user("alice")
    root = await imagine(fake, "alice", "a lighthouse at dusk")

    async def broken(*_args: Any, **_kwargs: Any) -> int:
        raise RuntimeError("simulated bug")

    bot.chains.run_step = broken  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR)
    await alice.reply(root, "add fog")
    answer = await fake.wait_for_message(
        predicate=lambda m: "went wrong" in m.content and "reference" in m.content, timeout=10
    )
    assert answer.reference_id is not None
