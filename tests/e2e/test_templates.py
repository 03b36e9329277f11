"""/template list | show | use | save | delete, template autocomplete, guild isolation,
Manage Server rules, and templates in /imagine and /prompt — driven as users would."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.errors import UserError
from tests.e2e.conftest import png_bytes
from tests.e2e.harness import BotHarness
from tests.fakes.discord_driver import FakeInteraction, FakeUser, Upload
from tests.fakes.discord_state import MessageRecord

POSTER = json.dumps(
    {
        "description": "A gig poster for one band",
        "spec": {
            "task": "generate_image",
            "subject": "gig poster for the band {{band}}",
            "style": "{{style|screen print, two colours}}",
            "output_format": {"aspect_ratio": "2:3"},
        },
    }
)


def _poster(subject: str) -> str:
    return json.dumps(
        {
            "description": f"poster v:{subject}",
            "spec": {"task": "generate_image", "subject": subject},
        }
    )


async def _answer(ix: FakeInteraction) -> MessageRecord:
    """The bot's (private) answer to a command that replies at once or after a defer."""
    await ix.wait_ack(timeout=3)
    msg = await ix.original(timeout=5)
    return msg


async def _save(user: FakeUser, name: str, body: str, **extra: Any) -> MessageRecord:
    return await _answer(await user.slash("template save", name=name, json=body, **extra))


def _result_predicate(m: MessageRecord) -> bool:
    return bool(m.embeds) and any(f.filename.startswith("nano-banana") for f in m.files)


# ------------------------------------------------------------------------------- list / show


async def test_list_shows_builtins_and_this_servers_templates(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    saved = await _save(fake.user("carol"), "poster", POSTER)
    assert "Saved" in saved.content and "poster" in saved.content, saved.content

    msg = await _answer(await fake.user("alice").slash("template list"))
    assert msg.ephemeral
    bot = bot_harness.bot
    assert bot is not None
    assert len(bot.templates.builtin) >= 7
    lines = msg.content.splitlines()
    for name, template in bot.templates.builtin.items():
        line = next((ln for ln in lines if f"`{name}`" in ln), None)
        assert line is not None, (name, msg.content)
        assert template.description[:30] in line  # one-line description beside each
    server = msg.content.split("**This server**", 1)
    assert len(server) == 2, msg.content
    assert "`poster` — A gig poster for one band" in server[1]


async def test_a_long_list_comes_as_a_file(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    bot = bot_harness.bot
    assert bot is not None
    body = json.dumps({"task": "generate_image", "subject": "{{thing}}"})
    for i in range(12):
        await bot.store.save_guild_template(
            guild_id=fake.guild_id,
            name=f"tpl{i:02d}",
            description=f"template number {i} " + "with a long description " * 6,
            body=body,
            author_id=fake.user("bob").id,
        )
    msg = await _answer(await fake.user("alice").slash("template list"))
    assert msg.ephemeral
    assert f"{len(bot.templates.builtin) + 12} templates (12 from this server)" in msg.content
    assert msg.attachment_names == ["templates.md"]
    listing = fake.attachment_bytes(msg.attachments[0]).decode()
    assert all(f"`tpl{i:02d}`" in listing for i in range(12))
    assert "`product_shot`" in listing


async def test_show_short_inline_and_long_as_a_file(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    await _save(alice, "poster", POSTER)

    short = await _answer(await alice.slash("template show", name="poster"))
    assert short.ephemeral and not short.attachments
    assert "```json" in short.content
    assert "band (required)" in short.content
    assert "style (default: screen print, two colours)" in short.content
    assert f"saved by <@{alice.id}>" in short.content
    body = short.content.split("```json\n", 1)[1].rsplit("\n```", 1)[0]
    assert "{{band}}" in body and json.loads(body.replace("{{band}}", "x"))["task"] == (
        "generate_image"
    )

    long = await _answer(await alice.slash("template show", name="product_shot"))
    assert long.ephemeral
    assert long.attachment_names == ["product_shot.json"]
    text = fake.attachment_bytes(long.attachments[0]).decode()
    bot = bot_harness.bot
    assert bot is not None
    assert text == bot.templates.builtin["product_shot"].body
    assert "product (default:" in long.content

    missing = await _answer(await alice.slash("template show", name="nope"))
    assert "no template called 'nope'" in missing.content


# ------------------------------------------------------------------------------- use


async def test_use_fills_vars_and_applies_options(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    ix = await alice.slash(
        "template use",
        name="product_shot",
        vars="product=running shoe; color=red",
        aspect="16:9",
        size="1K",
        model="flash",
    )
    result = await fake.wait_for_message(predicate=_result_predicate, timeout=20)
    assert result.id == (await ix.original()).id
    request = bot_harness.gemini.requests[-1]
    spec = request.spec
    assert spec is not None
    assert spec["product"]["name"] == "running shoe"
    assert spec["product"]["color"] == "red"
    # untouched placeholders take their defaults
    assert spec["environment"]["background"] == "seamless pure white cyclorama"
    assert "{{" not in json.dumps(spec)
    assert request.image_config.get("aspectRatio") == "16:9"
    assert request.model == "gemini-3.1-flash-image"


async def test_use_with_an_anchor_sends_its_image(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    saved = await _answer(
        await alice.slash(
            "anchor save", name="shoe", image=Upload("shoe.png", png_bytes(96, 96)), kind="product"
        )
    )
    assert "shoe" in saved.content
    await alice.slash("template use", name="product_shot", vars="product=shoe", anchors="shoe")
    await fake.wait_for_message(predicate=_result_predicate, timeout=20)
    request = bot_harness.gemini.requests[-1]
    assert len(request.input_images) == 1
    assert any("shoe" in t for t in request.texts[1:]), request.texts


async def test_use_reports_a_missing_placeholder_before_any_call(
    bot_harness: BotHarness,
) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    await _save(alice, "poster", POSTER)
    before = len(bot_harness.gemini.requests)
    msg = await _answer(await alice.slash("template use", name="poster", vars="style=ink"))
    assert msg.ephemeral
    assert "needs a value for: band" in msg.content
    bad = await _answer(await alice.slash("template use", name="poster", vars="colour=red; band=x"))
    assert "no placeholder 'colour'" in bad.content
    assert len(bot_harness.gemini.requests) == before


async def test_autocomplete_names_and_missing_placeholders(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    await _save(alice, "poster", POSTER)

    names = await alice.autocomplete("template use", "name", "")
    values = [c["value"] for c in names]
    assert "poster" in values and "product_shot" in values
    assert len(names) <= 25
    only = await alice.autocomplete("template use", "name", "prod")
    assert [c["value"] for c in only] == ["product_shot"]
    assert "E-commerce" in only[0]["name"]  # a hint of what it makes

    hints = await alice.autocomplete("template use", "vars", "", name="poster")
    assert hints[0]["value"] == "band=" and "(required)" in hints[0]["name"]
    assert "(default: screen print" in hints[1]["name"]
    more = await alice.autocomplete("template use", "vars", "band=muse", name="poster")
    assert [c["value"] for c in more] == ["band=muse; style="]
    half = await alice.autocomplete("template use", "vars", "band=muse; st", name="poster")
    assert [c["value"] for c in half] == ["band=muse; style="]
    assert await alice.autocomplete("template use", "vars", "band=x; style=y", name="poster") == []
    assert await alice.autocomplete("template use", "vars", "", name="no-such") == []
    batch = await alice.autocomplete("batch", "vars", "", template="poster")
    assert [c["value"] for c in batch] == ["band=", "style="]
    # /imagine, /prompt and /batch share the same template names
    assert "poster" in [c["value"] for c in await alice.autocomplete("imagine", "template", "po")]
    assert "poster" in [c["value"] for c in await alice.autocomplete("batch", "template", "po")]


# ------------------------------------------------------------------------------- save


async def test_save_validates_json_text_and_files(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    broken = await _save(alice, "poster", '{"task": "generate_image",\n "subject": }')
    assert "line 2" in broken.content and "column" in broken.content, broken.content

    wrong_task = await _save(alice, "poster", '{"task": "paint", "subject": "x"}')
    assert "task" in wrong_task.content and "paint" in wrong_task.content

    builtin = await _save(alice, "product_shot", POSTER)
    assert "built-in" in builtin.content

    bad_name = await _save(alice, "My Poster!", POSTER)
    assert "names" in bad_name.content

    both = await _answer(
        await alice.slash(
            "template save", name="poster", json=POSTER, file=Upload("p.json", POSTER.encode())
        )
    )
    assert "one of them" in both.content
    bot = bot_harness.bot
    assert bot is not None
    assert await bot.store.list_guild_templates(fake.guild_id) == []

    saved = await _answer(
        await alice.slash(
            "template save", name="poster", file=Upload("poster.json", POSTER.encode())
        )
    )
    assert "Saved server template **poster**" in saved.content
    row = await bot.store.get_guild_template(fake.guild_id, "poster")
    assert row is not None and row.author_id == alice.id
    assert row.description == "A gig poster for one band"

    await alice.slash("template use", name="poster", vars="band=The Cure")
    await fake.wait_for_message(predicate=_result_predicate, timeout=20)
    spec = bot_harness.gemini.requests[-1].spec
    assert spec is not None and spec["subject"] == "gig poster for the band The Cure"


async def test_manage_server_rules_for_overwrite_and_delete(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    admin, bob = fake.user("admin"), fake.user("bob")
    bot = bot_harness.bot
    assert bot is not None

    assert "Saved" in (await _save(admin, "house", _poster("admin's house style"))).content
    refused = await _save(bob, "house", _poster("bob's takeover"))
    assert "Manage Server" in refused.content
    row = await bot.store.get_guild_template(fake.guild_id, "house")
    assert row is not None and "admin's house style" in row.body and row.author_id == admin.id

    no_delete = await _answer(await bob.slash("template delete", name="house"))
    assert "Manage Server" in no_delete.content
    assert await bot.store.get_guild_template(fake.guild_id, "house") is not None

    # bob may overwrite his own; admin (Manage Server) may overwrite bob's
    assert "Saved" in (await _save(bob, "bobs", _poster("bob v1"))).content
    assert "Updated" in (await _save(bob, "bobs", _poster("bob v2"))).content
    assert "Updated" in (await _save(admin, "bobs", _poster("admin fixed it"))).content
    row = await bot.store.get_guild_template(fake.guild_id, "bobs")
    assert row is not None and "admin fixed it" in row.body

    # and delete it; bob deletes nothing of admin's
    assert "Deleted" in (await _answer(await admin.slash("template delete", name="bobs"))).content
    assert await bot.store.get_guild_template(fake.guild_id, "bobs") is None


async def test_delete_own_template_and_builtins_stay(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    carol = fake.user("carol")
    await _save(carol, "poster", POSTER)
    gone = await _answer(await carol.slash("template delete", name="poster"))
    assert "Deleted template **poster**" in gone.content
    listing = await _answer(await carol.slash("template list"))
    assert "`poster`" not in listing.content
    again = await _answer(await carol.slash("template delete", name="poster"))
    assert "no template called 'poster'" in again.content
    builtin = await _answer(await carol.slash("template delete", name="product_shot"))
    assert "can't be deleted" in builtin.content


# ------------------------------------------------------------------------------- isolation


async def test_server_templates_stay_in_their_guild(bot_harness: BotHarness) -> None:
    """The fake Discord models one guild (and no DMs), so the other server is the store's:
    a template another guild saved is invisible here, and ours is invisible there and in DMs."""
    fake = bot_harness.discord
    bot = bot_harness.bot
    assert bot is not None
    alice = fake.user("alice")
    other_guild = fake.guild_id + 1
    await bot.store.save_guild_template(
        guild_id=other_guild,
        name="secret",
        description="another server's template",
        body=json.dumps(json.loads(_poster("elsewhere"))["spec"]),
        author_id=1,
    )
    await _save(alice, "poster", POSTER)

    listing = await _answer(await alice.slash("template list"))
    assert "`poster`" in listing.content and "secret" not in listing.content
    names = [c["value"] for c in await alice.autocomplete("template use", "name", "")]
    assert "poster" in names and "secret" not in names
    use = await _answer(await alice.slash("template use", name="secret"))
    assert "no template called 'secret'" in use.content
    show = await _answer(await alice.slash("template show", name="secret"))
    assert "no template called 'secret'" in show.content

    # ours, seen from the other guild and from a DM (no guild)
    assert await bot.store.get_guild_template(other_guild, "poster") is None
    assert [r.name for r in await bot.store.list_guild_templates(other_guild)] == ["secret"]
    for guild in (other_guild, None):
        with pytest.raises(UserError, match="no template called 'poster'"):
            await bot.templates.find(guild, "poster")
    assert (await bot.templates.find(fake.guild_id, "poster")).source == "guild"


# ------------------------------------------------------------------------------- /imagine, /prompt


async def test_imagine_with_a_template(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    await alice.slash("imagine", prompt="product=running shoe; color=red", template="product_shot")
    await fake.wait_for_message(predicate=_result_predicate, timeout=20)
    spec = bot_harness.gemini.requests[-1].spec
    assert spec is not None
    assert (spec["product"]["name"], spec["product"]["color"]) == ("running shoe", "red")

    # free text beside a template is an extra instruction for the model
    await alice.slash("imagine", prompt="put it on a wet rock", template="product_shot")
    await fake.wait_for_message(predicate=_result_predicate, timeout=20)
    spec = bot_harness.gemini.requests[-1].spec
    assert spec is not None and spec.get("instructions") == "put it on a wet rock"
    assert spec["product"]["color"] == "matte black"

    # required placeholders still count
    await _save(alice, "poster", POSTER)
    before = len(bot_harness.gemini.requests)
    refused = await _answer(
        await alice.slash("imagine", prompt="make the lettering gold", template="poster")
    )
    assert refused.ephemeral and "needs a value for: band" in refused.content
    assert len(bot_harness.gemini.requests) == before


async def test_prompt_with_a_template_opens_a_prefilled_editor(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    bot = bot_harness.bot
    assert bot is not None
    alice = fake.user("alice")
    ix = await alice.slash("prompt", template="product_shot")
    assert await ix.wait_ack(timeout=3) == 9
    assert ix.modal is not None
    field = _text_inputs(ix.modal)[0]
    assert field["value"] == bot.templates.builtin["product_shot"].body

    edited = field["value"].replace("{{product|wireless over-ear headphones}}", "espresso machine")
    await alice.submit_modal(ix, {field["custom_id"]: edited})
    await fake.wait_for_message(predicate=_result_predicate, timeout=20)
    spec = bot_harness.gemini.requests[-1].spec
    assert spec is not None
    assert spec["product"]["name"] == "espresso machine"
    # placeholders left in the editor fall back to their defaults, not literal {{…}}
    assert spec["product"]["color"] == "matte black"
    assert "{{" not in json.dumps(spec)

    # a required placeholder left in the editor is named, and nothing is sent
    await _save(alice, "poster", POSTER)
    ix = await alice.slash("prompt", template="poster")
    field = _text_inputs(await _modal(ix))[0]
    assert "{{band}}" in field["value"]
    before = len(bot_harness.gemini.requests)
    submitted = await alice.submit_modal(ix, {field["custom_id"]: field["value"]})
    refused = await _answer(submitted)
    assert refused.ephemeral and "needs a value for: band" in refused.content
    assert len(bot_harness.gemini.requests) == before


async def _modal(ix: FakeInteraction) -> dict[str, Any]:
    assert await ix.wait_ack(timeout=3) == 9
    assert ix.modal is not None
    return ix.modal


def _text_inputs(modal: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def walk(items: list[dict[str, Any]]) -> None:
        for c in items:
            if c.get("type") == 4:
                out.append(c)
            walk(c.get("components") or [])
            if isinstance(c.get("component"), dict):
                walk([c["component"]])

    walk(modal.get("components") or [])
    return out
