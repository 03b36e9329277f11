from __future__ import annotations

from tests.e2e.conftest import png_bytes
from tests.e2e.harness import BotHarness
from tests.fakes.discord_driver import Upload


async def test_explore(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt="a cat", aspect="16:9", size="2K", model="flash",
                           negative="dogs", style="watercolour", reference=Upload("r.png", png_bytes()))
    await ix.wait_ack(3)
    msg = await fake.wait_for_message(predicate=lambda m: bool(m.embeds), timeout=20)
    print(msg, msg.embeds, msg.components)
    for e in msg.edits:
        print(e)
    req = bot_harness.gemini.requests[-1]
    print(req.model, req.image_config, req.texts, len(req.input_images))
    assert False
