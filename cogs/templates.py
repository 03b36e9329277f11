"""/template list | show | use | save | delete: built-in templates plus this server's own."""

from __future__ import annotations

import contextlib
import io
import re

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.prompts import RequestOptions, SpecError, parse_template, parse_vars
from bot.errors import UserError
from bot.presentation.places import require_bot_server
from bot.services.requests import split_names
from bot.services.templates import spec_from_template
from cogs._shared import (
    ASPECT_CHOICES,
    ECONOMY_HELP,
    MODEL_CHOICES,
    SIZE_CHOICES,
    anchor_autocomplete,
    bot_of,
    template_autocomplete,
)

NAME_RULE = re.compile(r"^[a-z0-9_-]{1,32}$")
MAX_TEMPLATE_BYTES = 32 * 1024


async def vars_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """Hints the placeholders still to fill, required ones first, completing a half-typed name
    ("band=muse; st" offers "band=muse; style=")."""
    name = getattr(interaction.namespace, "name", None) or getattr(
        interaction.namespace, "template", None
    )
    if not name:
        return []
    try:
        template = await bot_of(interaction).templates.find(interaction.guild_id, str(name))
        holders = template.placeholders()
    except (UserError, SpecError):
        return []
    head, _sep, last = current.rpartition(";")
    fragment = last.strip()
    if "=" in fragment or not fragment:
        head, fragment = current.strip().rstrip(";").strip(), ""
    else:
        head = head.strip()
    given = _lenient_vars(head)
    required = {p.name for p in holders if p.default is None}
    left = [p for p in holders if p.name not in given and p.name.startswith(fragment)]
    left.sort(key=lambda p: p.name not in required)  # stable: template order within each
    out = []
    for placeholder in left:
        value = f"{head}; {placeholder.name}=" if head else f"{placeholder.name}="
        hint = (
            "  (required)"
            if placeholder.name in required
            else f"  (default: {placeholder.default})"
        )
        label = value if len(value) > 90 else value + hint
        out.append(app_commands.Choice(name=label[:100], value=value[:100]))
    return out[:25]


def _lenient_vars(text: str) -> dict[str, str]:
    """The key=value pairs that parse; a half-typed one is ignored, not an error."""
    values: dict[str, str] = {}
    for item in text.split(";"):
        with contextlib.suppress(SpecError):
            values.update(parse_vars(item))
    return values


class Templates(
    commands.GroupCog, group_name="template", group_description="Reusable prompt templates"
):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="list", description="Built-in and server templates")
    async def list_cmd(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        lines = ["**Built-in**"]
        for name, template in sorted(bot.templates.builtin.items()):
            lines.append(f"`{name}` — {template.description}")
        rows = []
        if interaction.guild_id is not None:
            rows = await bot.store.list_guild_templates(interaction.guild_id)
            if rows:
                lines.append("**This server**")
                lines += [f"`{r.name}` — {r.description or 'no description'}" for r in rows]
        lines.append("Use one with /template use, see one with /template show.")
        text = "\n".join(lines)
        if len(text) <= 1900:
            await interaction.response.send_message(text, ephemeral=True)
            return
        # Too long for one message: the whole list as a file, never silently cut.
        count = len(bot.templates.builtin) + len(rows)
        await interaction.response.send_message(
            f"{count} templates ({len(rows)} from this server); the list is attached.",
            file=discord.File(io.BytesIO(text.encode()), filename="templates.md"),
            ephemeral=True,
        )

    @app_commands.command(name="show", description="Show a template's JSON and placeholders")
    @app_commands.autocomplete(name=template_autocomplete)
    async def show_cmd(self, interaction: discord.Interaction, name: str) -> None:
        template = await bot_of(interaction).templates.find(interaction.guild_id, name)
        placeholders = (
            ", ".join(
                f"{p.name}"
                + (f" (default: {p.default})" if p.default is not None else " (required)")
                for p in template.placeholders()
            )
            or "none"
        )
        head = f"**{template.name}** — {template.description or 'no description'}"
        if template.source == "guild" and interaction.guild_id is not None:
            row = await bot_of(interaction).store.get_guild_template(interaction.guild_id, name)
            if row is not None:
                head += f"\nServer template saved by <@{row.author_id}>"
        head += f"\nPlaceholders: {placeholders}"
        body = template.body
        if len(head) + len(body) + 20 <= 1900:
            await interaction.response.send_message(f"{head}\n```json\n{body}\n```", ephemeral=True)
        else:
            await interaction.response.send_message(
                head[:1900],
                file=discord.File(io.BytesIO(body.encode()), filename=f"{template.name}.json"),
                ephemeral=True,
            )

    @app_commands.command(name="use", description="Generate from a template")
    @app_commands.describe(vars='Values: "product=running shoe; color=red"', economy=ECONOMY_HELP)
    @app_commands.choices(aspect=ASPECT_CHOICES, size=SIZE_CHOICES, model=MODEL_CHOICES)
    @app_commands.autocomplete(
        name=template_autocomplete, vars=vars_autocomplete, anchors=anchor_autocomplete
    )
    async def use_cmd(
        self,
        interaction: discord.Interaction,
        name: str,
        vars: str | None = None,
        anchors: str | None = None,
        aspect: str | None = None,
        size: str | None = None,
        model: str | None = None,
        economy: bool | None = None,
    ) -> None:
        template = await bot_of(interaction).templates.find(interaction.guild_id, name)
        spec = spec_from_template(template, vars, None)
        options = RequestOptions(
            model=model, size=size, aspect=aspect, anchors=split_names(anchors)
        )
        await bot_of(interaction).requests.run(
            interaction, kind="template", raw=spec, options=options, economy=economy
        )

    @app_commands.command(name="save", description="Save a template for this server")
    @app_commands.describe(
        name="Template name (lowercase)",
        json="The template JSON",
        file="A .json file",
        description="One line saying what it makes",
    )
    @app_commands.guild_only()
    async def save_cmd(
        self,
        interaction: discord.Interaction,
        name: str,
        json: str | None = None,
        file: discord.Attachment | None = None,
        description: str | None = None,
    ) -> None:
        bot = bot_of(interaction)
        require_bot_server(interaction)
        clean = name.strip().lower()
        if not NAME_RULE.match(clean):
            raise UserError("Template names are 1–32 lowercase letters, digits, - or _.")
        if clean in bot.templates.builtin:
            raise UserError(f"'{clean}' is a built-in template; choose another name.")
        if (json is None) == (file is None):
            raise UserError("Give the template as json or as a .json file (one of them).")
        text = json or ""
        if file is not None:
            if file.size > MAX_TEMPLATE_BYTES:
                raise UserError(f"{file.filename} is over 32 KB.")
            try:
                text = (await file.read()).decode("utf-8-sig")
            except UnicodeDecodeError:
                raise UserError(f"{file.filename} is not UTF-8 text.") from None
        template = parse_template(clean, text, source="guild")
        guild_id = interaction.guild_id
        assert guild_id is not None
        existing = await bot.store.get_guild_template(guild_id, clean)
        if (
            existing is not None
            and existing.author_id != interaction.user.id
            and not _can_manage(interaction)
        ):
            raise UserError(
                f"'{clean}' belongs to someone else; only members with Manage Server can overwrite it."
            )
        await bot.store.save_guild_template(
            guild_id=guild_id,
            name=clean,
            description=(description or template.description or "")[:200],
            body=template.body,
            author_id=interaction.user.id,
        )
        verb = "Updated" if existing else "Saved"
        await interaction.response.send_message(
            f"{verb} server template **{clean}** "
            f"({len(template.placeholders())} placeholders). Use it with /template use name:{clean}",
            ephemeral=True,
        )

    @app_commands.command(name="delete", description="Delete a server template")
    @app_commands.autocomplete(name=template_autocomplete)
    @app_commands.guild_only()
    async def delete_cmd(self, interaction: discord.Interaction, name: str) -> None:
        bot = bot_of(interaction)
        require_bot_server(interaction)
        guild_id = interaction.guild_id
        assert guild_id is not None
        clean = name.strip().lower()
        existing = await bot.store.get_guild_template(guild_id, clean)
        if existing is None:
            if clean in bot.templates.builtin:
                raise UserError("Built-in templates can't be deleted.")
            raise UserError(f"This server has no template called '{clean}'.")
        if existing.author_id != interaction.user.id and not _can_manage(interaction):
            raise UserError("Only its author or members with Manage Server can delete it.")
        await bot.store.delete_guild_template(guild_id, clean)
        await interaction.response.send_message(f"Deleted template **{clean}**.", ephemeral=True)


def _can_manage(interaction: discord.Interaction) -> bool:
    """Manage Server, from the member's roles or the permissions Discord sent with the
    interaction (the member may not be cached)."""
    perms = getattr(interaction.user, "guild_permissions", None)
    return bool(perms and perms.manage_guild) or interaction.permissions.manage_guild


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Templates(bot))
