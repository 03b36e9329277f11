"""/settings, /usage, /history and the admins' /quota."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.store import GenerationRow, UsageRow
from bot.config import MODEL_ALIASES, model_display_name
from bot.core.preferences import (
    Preferences,
    combination_problems,
    fallback_for,
    preferences_for,
    update_preferences,
)
from bot.core.quotas import Limits, limits_for, month_start, resets_text, today
from bot.errors import UserError
from bot.presentation.economy import CHAINS_NOTE
from bot.presentation.places import GUILD_INSTALL, SERVERS_ONLY, place_of
from bot.presentation.targets import InteractionTarget
from bot.presentation.text import format_cost, jump_url, truncate
from bot.services.economy import economy_usage_line
from bot.services.requests import acknowledge
from cogs._shared import ASPECT_CHOICES, MODEL_CHOICES, SIZE_CHOICES, bot_of

STATUS_ICONS = {
    "done": "✅",
    "failed": "❌",
    "blocked": "🚫",
    "cancelled": "⏹️",
    "queued": "⏳",
    "running": "⏳",
}
HISTORY_LENGTH = 10


def _is_admin(interaction: discord.Interaction) -> bool:
    """Manage Server in this server (checked by the bot too: admins can open a command's
    permissions to everyone in the server's integration settings), a server the bot is in
    (elsewhere, installed to someone's account, its admins set nothing for the bot)."""
    if place_of(interaction).bot_server is None:
        return False
    return bool(interaction.permissions.manage_guild)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _alias(model: str) -> str:
    return next((a for a, m in MODEL_ALIASES.items() if m == model), model)


def _settings_text(prefs: Preferences, head: str, notes: list[str]) -> str:
    rows = [
        ("Model", f"{model_display_name(prefs.model)} (`{_alias(prefs.model)}`)", "model"),
        ("Size", prefs.size, "size"),
        ("Aspect", prefs.aspect, "aspect"),
        ("Private", "on" if prefs.private else "off", "private"),
        ("Threads", "on" if prefs.threads else "off", "threads"),
        ("Economy", "on" if prefs.economy else "off", "economy"),
    ]
    lines = [head]
    lines += [f"**{name}**: {value} _({prefs.sources[key]})_" for name, value, key in rows]
    lines += [f"⚠️ {note}" for note in notes]
    lines.append("-# Every command uses these unless you give the option; change with /settings.")
    lines.append(f"-# Economy: Gemini's Batch API, about half price, ready within 24 hours. {CHAINS_NOTE}")
    return "\n".join(lines)


def _usage_block(title: str, rows: list[UsageRow]) -> list[str]:
    if not rows:
        return [f"__{title}__: nothing"]
    images = sum(r.images for r in rows)
    cost = sum(r.cost for r in rows)
    lines = [f"__{title}__: {_plural(images, 'image')}, {format_cost(cost)}"]
    lines += [
        f"• {model_display_name(r.model)}: {_plural(r.images, 'image')}, {format_cost(r.cost)}"
        for r in rows
    ]
    return lines


def _limits_text(limits: Limits) -> str:
    images = (
        f"{limits.images_per_user} images"
        if limits.images_per_user is not None
        else "no image limit"
    )
    dollars = (
        f"${limits.dollars_per_user:.2f}"
        if limits.dollars_per_user is not None
        else "no dollar limit"
    )
    server = (
        f"${limits.dollars_guild:.2f} a day"
        if limits.dollars_guild is not None
        else "no daily budget"
    )
    return (
        f"• each user: {images}, {dollars} a day\n"
        f"• the whole server: {server}\n"
        "Failed and blocked requests never count. Limits reset at 00:00 UTC."
    )


def _history_line(row: GenerationRow) -> str:
    icon = STATUS_ICONS.get(row.status, "•")
    when = f"<t:{int(row.created_at)}:R>"
    summary = truncate(row.summary or row.kind, 70).replace("`", "'")
    if row.private:
        where = " (private)"
    elif row.message_id:
        where = f" [link]({jump_url(row.guild_id, row.channel_id, row.message_id)})"
    else:
        where = ""
    status = "" if row.status == "done" else f" _{row.status}_"
    return f"{icon} `#{row.id}` {when} {summary}{status}{where}"


class Account(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    # ------------------------------------------------------------------ /settings

    @app_commands.command(name="settings", description="Your defaults; no options shows them")
    @app_commands.describe(
        model="Default model",
        size="Default resolution",
        aspect="Default aspect ratio",
        private="Results only you can see, never posted in the channel",
        threads="Refine results in threads",
        economy="Batch API by default (half price, ≤24 h); chain steps and edits stay interactive",
    )
    @app_commands.choices(model=MODEL_CHOICES, size=SIZE_CHOICES, aspect=ASPECT_CHOICES)
    async def settings(
        self,
        interaction: discord.Interaction,
        model: str | None = None,
        size: str | None = None,
        aspect: str | None = None,
        private: bool | None = None,
        threads: bool | None = None,
        economy: bool | None = None,
    ) -> None:
        bot = bot_of(interaction)
        given = {
            "model": model,
            "size": size,
            "aspect": aspect,
            "private": private,
            "threads": threads,
            "economy": economy,
        }
        changes = {k: v for k, v in given.items() if v is not None}
        user_id, guild_id = interaction.user.id, interaction.guild_id
        if changes:
            prefs, notes = await update_preferences(
                bot.store, bot.settings, user_id, guild_id, changes
            )
            head = "Saved. Your defaults now:"
        else:
            prefs = await preferences_for(bot.store, bot.settings, user_id, guild_id)
            notes = [
                f"{problem}; your requests on it use {fallback_for(prefs, key)}."
                for key, problem in combination_problems(prefs).items()
            ]
            head = "Your defaults (and where each comes from):"
        await interaction.response.send_message(
            _settings_text(prefs, head, notes), ephemeral=True
        )

    # ------------------------------------------------------------------ /usage

    @app_commands.command(
        name="usage", description="Images and estimated cost today and this month"
    )
    @app_commands.describe(user="(admins) someone else's usage")
    async def usage(
        self, interaction: discord.Interaction, user: discord.User | None = None
    ) -> None:
        bot = bot_of(interaction)
        admin = _is_admin(interaction)
        if user is not None and user.id != interaction.user.id and not admin:
            raise UserError("Only admins (Manage Server) can see someone else's usage.")
        who = user or interaction.user
        guild_id = interaction.guild_id
        day = today()
        lines = [f"**Usage of {who.display_name}** (estimated cost)"]
        for title, first in (("Today", day), ("This month", month_start(day))):
            rows = await bot.store.usage_between(
                user_id=who.id, guild_id=guild_id, first_day=first, last_day=day
            )
            lines += _usage_block(title, rows)
            saving = await economy_usage_line(
                bot.store, user_id=who.id, guild_id=guild_id, first_day=first, last_day=day
            )
            if saving:
                lines.append(saving)
        limits = await limits_for(bot.store, bot.settings, guild_id)
        if limits.images_per_user is not None or limits.dollars_per_user is not None:
            use = await bot.store.reserved_today(user_id=who.id, guild_id=guild_id)
            parts = []
            if limits.images_per_user is not None:
                parts.append(f"{use.total_images} of {limits.images_per_user} images")
            if limits.dollars_per_user is not None:
                parts.append(f"${use.total_cost:.2f} of ${limits.dollars_per_user:.2f}")
            running = f" ({use.pending_images} in progress)" if use.pending_images else ""
            lines.append(f"Daily limit: {', '.join(parts)} used{running}; it {resets_text()}.")
        if admin and guild_id is not None:
            for title, first in (("Server today", day), ("Server this month", month_start(day))):
                rows = await bot.store.usage_between(
                    user_id=None, guild_id=guild_id, first_day=first, last_day=day
                )
                lines += _usage_block(title, rows)
                saving = await economy_usage_line(
                    bot.store, user_id=None, guild_id=guild_id, first_day=first, last_day=day
                )
                if saving:
                    lines.append(saving)
            if limits.dollars_guild is not None:
                everyone = await bot.store.reserved_today(user_id=None, guild_id=guild_id)
                lines.append(
                    f"Server budget: ${everyone.total_cost:.2f} of "
                    f"${limits.dollars_guild:.2f} used today."
                )
        await interaction.response.send_message(truncate("\n".join(lines), 2000), ephemeral=True)

    # ------------------------------------------------------------------ /history

    @app_commands.command(
        name="history", description="Your last generations; with id, post one again"
    )
    @app_commands.describe(id="A generation number (from the list) to post again with buttons")
    async def history(
        self,
        interaction: discord.Interaction,
        id: app_commands.Range[int, 1, 2**53 - 1] | None = None,
    ) -> None:
        if id is None:
            await self._list_history(interaction)
        else:
            await self._repost(interaction, id)

    async def _list_history(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        rows = await bot.store.recent_generations(interaction.user.id, limit=HISTORY_LENGTH)
        if not rows:
            raise UserError("You have no generations yet. Try /imagine.")
        head = "**Your last generations** (post one again with `/history id:N`)"
        lines = [head]
        for row in rows:
            line = _history_line(row)
            if sum(len(x) + 1 for x in lines) + len(line) > 1990:
                break
            lines.append(line)
        await interaction.response.send_message(
            "\n".join(lines), ephemeral=True, suppress_embeds=True
        )

    async def _repost(self, interaction: discord.Interaction, gid: int) -> None:
        bot = bot_of(interaction)
        gen = await bot.store.get_generation(gid)
        mine = gen is not None and gen.user_id == interaction.user.id
        # Someone else's result only if it was ever posted publicly in this server (ids are
        # sequential: anyone could page through every server's images); never say more.
        if gen is None or not (
            mine or (gen.public and gen.guild_id is not None and gen.guild_id == interaction.guild_id)
        ):
            raise UserError(f"There is no generation #{gid} you can see.")
        if gen.is_open:
            raise UserError(f"#{gid} is still being made; it will be posted when it is ready.")
        if gen.status != "done" or gen.output_image is None:
            raise UserError(
                f"#{gid} has no image ({gen.status}). Use the Retry button under it, "
                "or run it again."
            )
        stored = await bot.store.get_image(gen.output_image)
        if stored is None:
            raise UserError(f"The image of #{gid} is past the retention period and gone.")
        prefs = await preferences_for(
            bot.store, bot.settings, interaction.user.id, interaction.guild_id
        )
        private = gen.private or prefs.private
        await acknowledge(interaction, private=private)
        await bot.poster.post(
            gen, stored[0], stored[1], InteractionTarget(interaction, private=private)
        )

    # ------------------------------------------------------------------ /quota

    quota = app_commands.Group(
        name="quota",
        description="(admins) daily limits for this server",
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
        allowed_contexts=SERVERS_ONLY,  # servers that installed the bot, nowhere else
        allowed_installs=GUILD_INSTALL,
    )

    @quota.command(name="set", description="Set daily limits; 0 removes a limit")
    @app_commands.describe(
        user_images="Images per user per day (0: no limit)",
        user_dollars="Estimated dollars per user per day (0: no limit)",
        server_dollars="Estimated dollars per day for the whole server (0: no budget)",
    )
    async def quota_set(
        self,
        interaction: discord.Interaction,
        user_images: app_commands.Range[int, 0, 100000] | None = None,
        user_dollars: app_commands.Range[float, 0, 100000] | None = None,
        server_dollars: app_commands.Range[float, 0, 1000000] | None = None,
    ) -> None:
        if not _is_admin(interaction):
            raise UserError("Only admins (Manage Server) can set quotas.")
        bot = bot_of(interaction)
        assert interaction.guild_id is not None  # guild_only
        # 0 is stored (not deleted): it also overrides a default limit from the config.
        values: dict[str, float | int] = {}
        if user_images is not None:
            values["daily_images_per_user"] = user_images
        if user_dollars is not None:
            values["daily_dollars_per_user"] = user_dollars
        if server_dollars is not None:
            values["daily_dollars_guild"] = server_dollars
        if not values:
            raise UserError("Give at least one of user_images, user_dollars, server_dollars.")
        await bot.store.update_guild_settings(interaction.guild_id, **values)
        await self._send_limits(interaction, "Saved. Daily limits now:")

    @quota.command(name="show", description="Show this server's daily limits")
    async def quota_show(self, interaction: discord.Interaction) -> None:
        if not _is_admin(interaction):
            raise UserError("Only admins (Manage Server) can see the quotas; /usage shows yours.")
        await self._send_limits(interaction, "Daily limits:")

    async def _send_limits(self, interaction: discord.Interaction, head: str) -> None:
        bot = bot_of(interaction)
        limits = await limits_for(bot.store, bot.settings, interaction.guild_id)
        await interaction.response.send_message(
            f"{head}\n{_limits_text(limits)}", ephemeral=True
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Account(bot))
