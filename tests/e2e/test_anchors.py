"""Identity anchors end to end: save, use, rename, delete, privacy, limits, context menu.

The real bot against the fake Discord and the fake Gemini. Anchor names are chosen so they
cannot appear by accident in a message ("kestrel", not "alice", which is a user's name).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from bot.adapters import imaging
from bot.adapters.store import AnchorRow
from tests.e2e.conftest import png_bytes
from tests.e2e.harness import BotHarness
from tests.fakes.discord_driver import FakeUser, Upload
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import MessageRecord
from tests.fakes.gemini import FakeRequest, b64decode_any, fake_mark_of

RED = (200, 40, 40)
GREEN = (40, 200, 40)
BLUE = (40, 40, 200)


# ---- helpers -------------------------------------------------------------------------------


async def private_reply(
    fake: FakeDiscord,
    user: FakeUser,
    contains: str,
    timeout: float = 10,  # noqa: ASYNC109
) -> MessageRecord:
    """The next ephemeral bot message to `user` whose text contains `contains`."""
    return await fake.wait_for_message(
        predicate=lambda m: m.visible_to == user.id and contains in m.text, timeout=timeout
    )


async def save(
    h: BotHarness, user: FakeUser, name: str, colour: tuple[int, int, int] = RED, **options: Any
) -> AnchorRow:
    ix = await user.slash(
        "anchor save", name=name, image=Upload(f"{name}.png", png_bytes(96, 128, colour)), **options
    )
    await ix.wait_ack(3)
    reply = await private_reply(h.discord, user, "Saved anchor")
    assert f"**{name}**" in reply.text
    assert h.bot is not None
    row = await h.bot.store.get_anchor(user.id, name)
    assert row is not None
    return row


def is_result(m: MessageRecord) -> bool:
    return any(f.filename == "prompt.json" for f in m.files)


async def result(fake: FakeDiscord, timeout: float = 20) -> MessageRecord:  # noqa: ASYNC109
    return await fake.wait_for_message(predicate=is_result, timeout=timeout)


def labelled_images(request: FakeRequest) -> dict[str, bytes]:
    """{label text: the image bytes in the part right after it} of the current turn."""
    parts = request.last_content.get("parts") or []
    out: dict[str, bytes] = {}
    for part, following in itertools.pairwise(parts):
        text = part.get("text")
        blob = following.get("inlineData")
        if isinstance(text, str) and text.startswith("Image ") and blob:
            out[text] = b64decode_any(str(blob["data"]))
    return out


async def stored_bytes(h: BotHarness, anchor: AnchorRow) -> bytes:
    assert h.bot is not None
    stored = await h.bot.store.get_image(anchor.image_sha)
    assert stored is not None
    return stored[0]


def public_text(fake: FakeDiscord) -> str:
    """Everything in public bot messages: text, embeds, file names and the files' text."""
    chunks: list[str] = []
    for channel in ("general", "art"):
        for m in fake.messages_in(channel):
            if m.author.id != fake.bot_user.id:
                continue
            chunks.append(m.text)
            chunks.append(json.dumps(m.embeds))
            for f in m.files:
                chunks.append(f.filename)
                if f.filename.endswith(".json"):
                    chunks.append(fake.attachment_bytes(f).decode())
    for thread in fake.threads:
        chunks.append(thread.name or "")
    return "\n".join(chunks)


# ---- the life of an anchor -----------------------------------------------------------------


async def test_save_use_rename_use_delete(bot_harness: BotHarness) -> None:
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    assert h.bot is not None
    alice, bob = fake.user("alice"), fake.user("bob")
    anchor = await save(h, alice, "kestrel", kind="face", note="my face, front light")
    original = await stored_bytes(h, anchor)
    # stored normalised: opaque PNG in -> JPEG, metadata stripped, same size (under 2048 px)
    assert original[:3] == b"\xff\xd8\xff" and (anchor.width, anchor.height) == (96, 128)
    assert anchor.kind == "face" and anchor.note == "my face, front light"

    ix = await alice.slash("imagine", prompt="a portrait in a sunlit cafe", anchors="kestrel")
    await ix.wait_ack(3)
    first = await result(fake)
    request = gemini.requests[-1]
    images = labelled_images(request)
    assert images == {"Image 1: identity anchor 'kestrel' (face)": original}
    assert request.spec is not None
    assert "keep facial features identical to image 1" in request.spec["consistency_rules"]
    # nothing public names the anchor: not the embed, not prompt.json
    prompt_json = next(f for f in first.files if f.filename == "prompt.json")
    public = json.loads(fake.attachment_bytes(prompt_json))
    assert public["inputs"] == [
        {"type": "image", "data": "anchor:(private)", "role": "identity_anchor"}
    ]
    assert "kestrel" not in public_text(fake)
    # the Prompt button shows the name to its owner only
    await alice.click(first, "Prompt")
    owner_view = await private_reply(fake, alice, "```json")
    assert "anchor:kestrel" in owner_view.text
    await bob.click(first, "Prompt")
    other_view = await private_reply(fake, bob, "```json")
    assert "kestrel" not in other_view.text and "anchor:(private)" in other_view.text
    # nor may someone else reroll with it
    await bob.click(first, "Reroll")
    await private_reply(fake, bob, "someone's private anchors")

    ix = await alice.slash("anchor rename", name="kestrel", new_name="falcon")
    await private_reply(fake, alice, "Renamed **kestrel** to **falcon**")
    calls = len(gemini.requests)
    await alice.slash("imagine", prompt="the same face at night", anchors="kestrel")
    await private_reply(fake, alice, "you have no anchor called 'kestrel'")
    assert len(gemini.requests) == calls

    await alice.slash("imagine", prompt="the same face at night", anchors="falcon")
    await result(fake)
    assert labelled_images(gemini.requests[-1]) == {
        "Image 1: identity anchor 'falcon' (face)": original
    }

    path = h.bot.store.images_dir / anchor.image_sha[:2] / anchor.image_sha
    assert path.is_file()
    await alice.slash("anchor delete", name="falcon")
    await private_reply(fake, alice, "Deleted anchor **falcon**")
    assert not path.exists()  # gone, although two generations used it
    assert await h.bot.store.get_image(anchor.image_sha) is None
    calls = len(gemini.requests)
    await alice.slash("imagine", prompt="once more", anchors="falcon")
    await private_reply(fake, alice, "you have no anchor called 'falcon'")
    # a reroll of an image made with it cannot bring the face back either
    await alice.click(first, "Reroll")
    await private_reply(fake, alice, "no longer stored")
    assert len(gemini.requests) == calls
    await alice.slash("anchor list")
    await private_reply(fake, alice, "You have no anchors yet")


async def test_list_and_show_are_private(bot_harness: BotHarness) -> None:
    h, fake = bot_harness, bot_harness.discord
    alice = fake.user("alice")
    await save(h, alice, "kestrel", RED, kind="face")
    logo = await save(h, alice, "logo_2", BLUE, kind="product")

    await alice.slash("anchor list")
    sheet = await private_reply(fake, alice, "Your 2 anchors")
    assert sheet.ephemeral
    assert "**kestrel** (face)" in sheet.text and "**logo_2** (product)" in sheet.text
    (image,) = sheet.files
    width, height = imaging.image_size(fake.attachment_bytes(image))
    assert width > height  # two tiles side by side, labels underneath

    await alice.slash("anchor show", name="logo_2")
    shown = await private_reply(fake, alice, "**logo_2** — product")
    assert shown.ephemeral
    (image,) = shown.files
    assert fake.attachment_bytes(image) == await stored_bytes(h, logo)
    assert "kestrel" not in public_text(fake) and "logo_2" not in public_text(fake)

    # stored normalised: at most 2048 px on the long side
    await alice.slash(
        "anchor save", name="wide", image=Upload("wide.png", png_bytes(3000, 1000)), kind="object"
    )
    await private_reply(fake, alice, "Saved anchor **wide** (object, 2048×683)")


# ---- privacy between users -----------------------------------------------------------------


async def test_other_users_cannot_see_or_use_an_anchor(bot_harness: BotHarness) -> None:
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    assert h.bot is not None
    alice, bob = fake.user("alice"), fake.user("bob")
    await save(h, alice, "kestrel")

    # autocomplete: every anchors option offers only the caller's own anchors
    for command, option, extra in (
        ("imagine", "anchors", {"prompt": "x"}),
        ("edit", "anchors", {}),
        ("template use", "anchors", {}),
        ("anchor show", "name", {}),
        ("anchor delete", "name", {}),
        ("anchor rename", "name", {}),
    ):
        assert await bob.autocomplete(command, option, "", **extra) == [], command
        assert await bob.autocomplete(command, option, "kes", **extra) == [], command
        mine = await alice.autocomplete(command, option, "kes", **extra)
        assert [c["value"] for c in mine] == ["kestrel"], command
    latency = fake.ack_latencies[-1]
    assert latency < 1.0

    await bob.slash("imagine", prompt="a portrait", anchors="kestrel")
    await private_reply(fake, bob, "you have no anchor called 'kestrel'")
    await bob.slash(
        "prompt",
        json=json.dumps(
            {
                "subject": "a portrait",
                "inputs": [{"type": "image", "data": "anchor:kestrel", "role": "identity_anchor"}],
            }
        ),
    )
    await private_reply(fake, bob, "you have no anchor called 'kestrel'")
    await bob.slash("edit", image=Upload("me.png", png_bytes()), changes="x", anchors="kestrel")
    await private_reply(fake, bob, "you have no anchor called 'kestrel'")
    await bob.slash("anchor show", name="kestrel")
    await private_reply(fake, bob, "You have no anchor called 'kestrel'")
    await bob.slash("anchor delete", name="kestrel")
    await private_reply(fake, bob, "You have no anchor called 'kestrel'")
    await bob.slash("anchor rename", name="kestrel", new_name="mine")
    await private_reply(fake, bob, "You have no anchor called 'kestrel'")
    await bob.slash("anchor list")
    await private_reply(fake, bob, "You have no anchors yet")
    assert gemini.requests == []
    assert await h.bot.store.get_anchor(alice.id, "kestrel") is not None

    # Bob may have his own "kestrel": names are per owner, and each gets their own image
    bobs = await save(h, bob, "kestrel", GREEN)
    alices = await h.bot.store.get_anchor(alice.id, "kestrel")
    assert alices is not None and bobs.image_sha != alices.image_sha
    await bob.slash("imagine", prompt="a portrait", anchors="kestrel")
    await result(fake)
    assert list(labelled_images(gemini.requests[-1]).values()) == [await stored_bytes(h, bobs)]


# ---- limits --------------------------------------------------------------------------------


async def test_model_limits_are_checked_before_any_call(bot_harness: BotHarness) -> None:
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    names = [f"a{i}" for i in range(1, 8)]
    for i, name in enumerate(names):
        kind = {"kind": "product"} if name == "a6" else {}  # five faces and a product
        await save(h, alice, name, (30 * i, 100, 200 - 20 * i), **kind)

    # autocomplete continues a comma-separated list with the names not yet in it
    choices = await alice.autocomplete("imagine", "anchors", "a3, a", prompt="x")
    assert [c["value"] for c in choices] == [f"a3, {n}" for n in names if n != "a3"]

    await alice.slash("imagine", prompt="a team photo", anchors=",".join(names))
    await private_reply(fake, alice, "7 identity anchors, but Nano Banana Pro keeps at most 6")
    await alice.slash("imagine", prompt="a team photo", anchors="a1,a2,a3,a4,a5,a7")
    await private_reply(fake, alice, "6 identity anchors are characters or faces")
    await alice.slash("imagine", prompt="a team photo", anchors=",".join(names[:5]), model="flash")
    await private_reply(fake, alice, "5 identity anchors are characters or faces")
    await alice.slash("imagine", prompt="a team photo", anchors="a1", model="lite")
    await private_reply(fake, alice, "Nano Banana 2 Lite does not keep identities")
    many = [{"type": "image", "data": f"anchor:{n}", "role": "reference"} for n in names] * 2
    many.append({"type": "image", "data": "anchor:a1", "role": "style"})
    await alice.slash("prompt", json=json.dumps({"subject": "a collage", "inputs": many}))
    await private_reply(fake, alice, "15 input images, but Nano Banana Pro takes at most 14")
    assert gemini.requests == []

    # six is fine (five faces and a product): six labelled anchors, six consistency rules
    await alice.slash("imagine", prompt="a team photo", anchors=",".join(names[:6]))
    await result(fake)
    request = gemini.requests[-1]
    assert list(labelled_images(request)) == [
        f"Image {i}: identity anchor 'a{i}' ({'product' if i == 6 else 'face'})"
        for i in range(1, 7)
    ]
    assert request.spec is not None and len(request.spec["consistency_rules"]) == 6


# ---- names ---------------------------------------------------------------------------------


async def test_bad_names_and_clashes(bot_harness: BotHarness) -> None:
    h, fake = bot_harness, bot_harness.discord
    assert h.bot is not None
    alice = fake.user("alice")
    for bad in ("has space", "émile", "a" * 33, "dot.name", "colon:name"):
        ix = await alice.slash("anchor save", name=bad, image=Upload("x.png", png_bytes()))
        await ix.wait_ack(3)
        reply = await private_reply(fake, alice, "is not a valid anchor name")
        assert "1–32" in reply.text
    assert await h.bot.store.list_anchors(alice.id) == []

    await save(h, alice, "kestrel", kind="face")
    await save(h, alice, "owl-2", kind="character")
    ix = await alice.slash("anchor save", name="kestrel", image=Upload("x.png", png_bytes()))
    await private_reply(fake, alice, "You already have an anchor called 'kestrel'")
    await alice.slash("anchor rename", name="owl-2", new_name="kestrel")
    await private_reply(fake, alice, "You already have an anchor called 'kestrel'")
    await alice.slash("anchor rename", name="owl-2", new_name="Not OK")
    await private_reply(fake, alice, "is not a valid anchor name")
    await alice.slash("anchor rename", name="nobody", new_name="fine")
    await private_reply(fake, alice, "You have no anchor called 'nobody'")
    # upper case is folded to lower case, not an error
    await save(h, alice, "heron", kind="object")
    rows = await h.bot.store.list_anchors(alice.id)
    assert [(r.name, r.kind) for r in rows] == [
        ("heron", "object"), ("kestrel", "face"), ("owl-2", "character")]  # fmt: skip
    # and an image that is not an image is refused before anything is stored
    await alice.slash("anchor save", name="junk", image=Upload("junk.png", b"not a picture"))
    await private_reply(fake, alice, "junk.png")
    assert await h.bot.store.get_anchor(alice.id, "junk") is None


# ---- the Save as anchor context menu -------------------------------------------------------


async def test_save_as_anchor_from_a_message(bot_harness: BotHarness) -> None:
    h, fake = bot_harness, bot_harness.discord
    assert h.bot is not None
    alice = fake.user("alice")
    photo = png_bytes(120, 80, GREEN)
    posted = await alice.say("general", "my product", files=[Upload("shoe.png", photo)])

    ix = await alice.context_menu("Save as anchor", posted)
    await ix.wait_ack(3)
    assert ix.modal is not None and ix.response_type == 9
    await alice.submit_modal(ix, {"name": "shoe", "kind": "product"})
    await private_reply(fake, alice, "Saved anchor **shoe** (product")
    anchor = await h.bot.store.get_anchor(alice.id, "shoe")
    assert anchor is not None and anchor.kind == "product"
    expected = imaging.normalise_inbound(photo, filename="shoe.png")
    assert await stored_bytes(h, anchor) == expected.data

    # bad name or a clash in the modal: a clear private message, nothing saved
    ix = await alice.context_menu("Save as anchor", posted)
    await alice.submit_modal(ix, {"name": "Shoe Two", "kind": "product"})
    await private_reply(fake, alice, "is not a valid anchor name")
    ix = await alice.context_menu("Save as anchor", posted)
    await alice.submit_modal(ix, {"name": "shoe", "kind": "object"})
    await private_reply(fake, alice, "You already have an anchor called 'shoe'")

    # a message without an image
    text_only = await alice.say("general", "no picture here")
    await alice.context_menu("Save as anchor", text_only)
    await private_reply(fake, alice, "no image")
    assert len(await h.bot.store.list_anchors(alice.id)) == 1


async def test_save_as_anchor_from_a_result_keeps_the_original(bot_harness: BotHarness) -> None:
    h, fake = bot_harness, bot_harness.discord
    assert h.bot is not None
    alice, bob = fake.user("alice"), fake.user("bob")
    # a small upload limit: the posted image is a re-encoded copy, not the original
    fake.upload_limit = 600 * 1024
    await alice.slash("imagine", prompt="a lighthouse at dusk")
    posted = await result(fake)
    gen = await h.bot.store.generation_by_message(posted.id)
    assert gen is not None and gen.output_image is not None
    original = await h.bot.store.get_image(gen.output_image)
    assert original is not None
    shown = next(f for f in posted.files if f.filename.startswith("nano-banana"))
    assert fake.attachment_bytes(shown) != original[0]

    # anyone may keep a public result as their own anchor (default kind: face)
    ix = await bob.context_menu("Save as anchor", posted)
    await bob.submit_modal(ix, {"name": "lighthouse"})
    await private_reply(fake, bob, "Saved anchor **lighthouse** (face")
    anchor = await h.bot.store.get_anchor(bob.id, "lighthouse")
    assert anchor is not None
    expected = imaging.normalise_inbound(original[0], filename="result.png")
    assert await stored_bytes(h, anchor) == expected.data
    assert (anchor.width, anchor.height) == (1024, 1024)
    assert fake_mark_of(await stored_bytes(h, anchor)) == h.gemini.issued[-1].mark
    assert await h.bot.store.get_anchor(alice.id, "lighthouse") is None


# ---- anchors in JSON, /edit, /template use, /batch, blends and chain steps ---------------


async def test_anchors_in_json_prompt(bot_harness: BotHarness) -> None:
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    face = await save(h, alice, "kestrel", RED, kind="face")
    ink = await save(h, alice, "ink", BLUE, kind="style")
    spec = {
        "task": "generate_image",
        "subject": "a woman reading on a train",
        "style": {"look": "ink wash", "reference": "anchor:ink"},
        "inputs": [
            {"type": "image", "data": "anchor:kestrel", "role": "identity_anchor"},
            {"type": "image", "data": "anchor:ink", "role": "style"},
        ],
    }
    await alice.slash("prompt", json=json.dumps(spec))
    posted = await result(fake)
    request = gemini.requests[-1]
    assert labelled_images(request) == {
        "Image 1: identity anchor 'kestrel' (face)": await stored_bytes(h, face),
        "Image 2: style reference: saved anchor 'ink' (style)": await stored_bytes(h, ink),
    }
    assert request.spec is not None
    assert request.spec["consistency_rules"] == ["keep facial features identical to image 1"]
    # hidden wherever the spec names an anchor, not only in inputs
    assert "kestrel" not in public_text(fake) and "anchor:ink" not in public_text(fake)
    assert posted.embed is not None and "reading on a train" in posted.embed["title"]

    # blend_images in JSON: two anchors blended (the /blend command has no anchors option)
    await save(h, alice, "owl", GREEN, kind="character")
    await alice.slash(
        "prompt",
        json=json.dumps(
            {
                "task": "blend_images",
                "changes": "put both in one scene",
                "inputs": [
                    {"type": "image", "data": "anchor:kestrel", "role": "identity_anchor"},
                    {"type": "image", "data": "anchor:owl", "role": "identity_anchor"},
                ],
            }
        ),
    )
    await result(fake)
    request = gemini.requests[-1]
    assert list(labelled_images(request)) == [
        "Image 1: identity anchor 'kestrel' (face)",
        "Image 2: identity anchor 'owl' (character)",
    ]
    assert request.spec is not None and request.spec["task"] == "blend_images"
    assert (
        "keep facial features, hairstyle and outfit identical to image 2"
        in (request.spec["consistency_rules"])
    )
    assert "owl" not in public_text(fake)


async def test_anchors_in_edit_template_and_batch(bot_harness: BotHarness) -> None:
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    face = await save(h, alice, "kestrel", RED, kind="face")
    shoe = await save(h, alice, "shoe", BLUE, kind="product")

    await alice.slash(
        "edit", image=Upload("room.png", png_bytes(64, 64, GREEN)),
        changes="put her in the armchair", anchors="kestrel",
    )  # fmt: skip
    await result(fake)
    labels = list(labelled_images(gemini.requests[-1]))
    assert labels == ["Image 1: image to edit (attachment 1)",
                      "Image 2: identity anchor 'kestrel' (face)"]  # fmt: skip

    await alice.slash("template use", name="product_shot", anchors="shoe",
                      vars="product=running shoe")  # fmt: skip
    await result(fake)
    request = gemini.requests[-1]
    assert labelled_images(request) == {
        "Image 1: identity anchor 'shoe' (product)": await stored_bytes(h, shoe)
    }
    assert request.spec is not None and any(
        "product's shape" in rule for rule in request.spec["consistency_rules"]
    )

    base = {
        "subject": {"description": "a woman in a coat", "coat_colour": "red"},
        "inputs": [{"type": "image", "data": "anchor:kestrel", "role": "identity_anchor"}],
    }
    calls = len(gemini.requests)
    await alice.slash("batch", field="subject.coat_colour", values="red, green",
                      json=json.dumps(base))  # fmt: skip
    await fake.wait_for_message(
        predicate=lambda m: "Batch on" in m.text and "2 of 2 images" in m.text, timeout=30
    )
    batch_requests = gemini.requests[calls:]
    assert len(batch_requests) == 2
    for request in batch_requests:
        assert labelled_images(request) == {
            "Image 1: identity anchor 'kestrel' (face)": await stored_bytes(h, face)
        }
    assert "kestrel" not in public_text(fake)


async def test_anchor_in_a_chain_step(bot_harness: BotHarness) -> None:
    h, fake, gemini = bot_harness, bot_harness.discord, bot_harness.gemini
    alice, bob = fake.user("alice"), fake.user("bob")
    face = await save(h, alice, "kestrel", RED, kind="face")
    await alice.slash("imagine", prompt="an empty park bench in autumn")
    first = await result(fake)

    await alice.reply(first, "seat anchor:kestrel on the bench, reading")
    step = await result(fake)
    request = gemini.requests[-1]
    images = labelled_images(request)
    assert list(images) == [
        "Image 1: the current image (step 0)",
        "Image 2: identity anchor 'kestrel' (face)",
    ]
    assert images["Image 2: identity anchor 'kestrel' (face)"] == await stored_bytes(h, face)
    assert request.spec is not None
    assert request.spec["changes"] == "seat the subject of image 2 on the bench, reading"
    assert "keep facial features identical to image 2" in request.spec["consistency_rules"]
    assert "kestrel" not in public_text(fake)

    # in the same thread, Bob naming Alice's anchor gets nothing of hers
    calls = len(gemini.requests)
    await bob.reply(step, "add anchor:kestrel to the left")
    answer = await fake.wait_for_message(
        predicate=lambda m: "no anchor called 'kestrel'" in m.text, timeout=10
    )
    assert answer.reference_id is not None
    assert len(gemini.requests) == calls

    # and Bob cannot continue Alice's anchored chain: its history would resend her face
    await bob.reply(step, "make it night")
    refused = await fake.wait_for_message(
        predicate=lambda m: "someone else's private anchors" in m.text, timeout=10
    )
    assert refused.reference_id is not None
    assert len(gemini.requests) == calls
    # Alice herself still can
    await alice.reply(step, "make it night")
    await result(fake)
    assert len(gemini.requests) == calls + 1
