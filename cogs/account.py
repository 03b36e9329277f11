"""/settings, /usage, /history and the admins' /quota."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import capability, model_display_name, resolve_model
from bot.errors import UserError
from bot.flows import acknowledge
from bot.preferences import preferences_for
from bot.quotas import limits_for, today
from bot.store import UsageRow
from bot.targets import InteractionTarget
from bot.ui import format_cost, truncate
from cogs._shared import ASPECT_CHOICES, MODEL_CHOICES, SIZE_CHOICES, bot_of

STATUS_ICONS = {
    "done": "✅",
    "failed": "❌",
    "blocked": "🚫",
    "cancelled": "⏹️",
    "queued": "⏳",
    "running": "⏳",
}


def _is_admin(interaction: discord.Interaction) -> bool:
    perms = getattr(interaction.user, "guild_permissions", None)
    return bool(perms and perms.manage_guild)


class Account(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(name="settings", description="Your defaults; no options shows them")
    @app_commands.describe(
        model="Default model",
        size="Default resolution",
        aspect="Default aspect ratio",
        private="Results only you can see",
        threads="Refine results in threads",
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
    ) -> None:
        bot = bot_of(interaction)
        changes = {
            k: v
            for k, v in {
                "model": model,
                "size": size,
                "aspect": aspect,
                "private": private,
                "threads": threads,
            }.items()
            if v is not None
        }
        if changes:
            current = await preferences_for(
                bot.store, bot.settings, interaction.user.id, interaction.guild_id
            )
            chosen = resolve_model(str(changes.get("model", current.model)))
            cap = capability(chosen)
            if "size" in changes and changes["size"] not in cap.sizes:
                raise UserError(
                    f"{cap.name} has no size {changes['size']}; it offers {', '.join(cap.sizes)}."
                )
            if "aspect" in changes and changes["aspect"] not in cap.aspect_ratios:
                raise UserError(f"{cap.name} has no aspect ratio {changes['aspect']}.")
            await bot.store.update_user_settings(interaction.user.id, **changes)
        prefs = await preferences_for(
            bot.store, bot.settings, interaction.user.id, interaction.guild_id
        )
        rows = [
            ("Model", model_display_name(prefs.model), prefs.sources["model"]),
            ("Size", prefs.size, prefs.sources["size"]),
            ("Aspect", prefs.aspect, prefs.sources["aspect"]),
            ("Private", "on" if prefs.private else "off", prefs.sources["private"]),
            ("Threads", "on" if prefs.threads else "off", prefs.sources["threads"]),
        ]
        head = "Saved. Your defaults now:" if changes else "Your defaults:"
        body = "\n".join(f"**{name}**: {value} _({source})_" for name, value, source in rows)
        await interaction.response.send_message(f"{head}\n{body}", ephemeral=True)

    @app_commands.command(
        name="usage", description="Images and estimated cost today and this month"
    )
    @app_commands.describe(user="(admins) someone else's usage")
    async def usage(
        self, interaction: discord.Interaction, user: discord.User | None = None
    ) -> None:
        bot = bot_of(interaction)
        if user is not None and user.id != interaction.user.id and not _is_admin(interaction):
            raise UserError("Only admins (Manage Server) can see someone else's usage.")
        who = user or interaction.user
        day = today()
        month_start = day[:8] + "01"
        lines = [f"**Usage of {who.display_name}**"]
        for title, first in (("Today", day), ("This month", month_start)):
            rows = await bot.store.usage_between(
                user_id=who.id, guild_id=interaction.guild_id, first_day=first, last_day=day
            )
            lines.append(_usage_block(title, rows))
        if _is_admin(interaction) and interaction.guild_id is not None:
            for title, first in (("Server today", day), ("Server this month", month_start)):
                rows = await bot.store.usage_between(
                    user_id=None, guild_id=interaction.guild_id, first_day=first, last_day=day
                )
                lines.append(_usage_block(title, rows))
        limits = await limits_for(bot.store, bot.settings, interaction.guild_id)
        quota = []
        if limits.images_per_user is not None:
            quota.append(f"{limits.images_per_user} images a day")
        if limits.dollars_per_user is not None:
            quota.append(f"${limits.dollars_per_user:.2f} a day")
        if quota:
            lines.append("Your limit: " + ", ".join(quota))
        await interaction.response.send_message("\n".join(lines)[:2000], ephemeral=True)

    @app_commands.command(
        name="history", description="Your last generations; with id, post one again"
    )
    @app_commands.describe(id="A generation number to post again with live buttons")
    async def history(self, interaction: discord.Interaction, id: int | None = None) -> None:
        bot = bot_of(interaction)
        if id is None:
            rows = await bot.store.recent_generations(interaction.user.id, limit=10)
            if not rows:
                raise UserError("You have no generations yet. Try /imagine.")
            lines = []
            for row in rows:
                when = f"<t:{int(row.created_at)}:R>"
                link = (
                    f" [link](https://discord.com/channels/{row.guild_id or '@me'}/{row.channel_id}/{row.message_id})"
                    if row.message_id and not row.private
                    else ""
                )
                icon = STATUS_ICONS.get(row.status, "•")
                lines.append(f"{icon} `#{row.id}` {when} {truncate(row.summary, 80)}{link}")
            await interaction.response.send_message(
                "**Your last generations** (post one again with /history id:N)\n"
                + "\n".join(lines),
                ephemeral=True,
            )
            return
        gen = await bot.store.get_generation(id)
        if gen is None or (gen.user_id != interaction.user.id and not gen.public):
            raise UserError(f"There is no generation #{id} you can see.")
        if gen.status != "done" or gen.output_image is None:
            raise UserError(
                f"#{id} has no image ({gen.status}); use its Retry button or run it again."
            )
        stored = await bot.store.get_image(gen.output_image)
        if stored is None:
            raise UserError(
                f"The image of #{id} is past the retention period and no longer stored."
            )
        private = gen.private
        await acknowledge(interaction, private=private)
        await bot.generator.post_result(
            gen, stored[0], stored[1], InteractionTarget(interaction, private=private)
        )

    quota = app_commands.Group(
        name="quota",
        description="(admins) daily limits for this server",
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )

    @quota.command(name="set", description="Set daily limits; 0 removes a limit")
    @app_commands.describe(
        user_images="Images per user per day",
        user_dollars="Dollars per user per day",
        server_dollars="Dollars per day for the whole server",
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
        assert interaction.guild_id is not None
        values: dict[str, float | int | None] = {}
        if user_images is not None:
            values["daily_images_per_user"] = user_images or None
        if user_dollars is not None:
            values["daily_dollars_per_user"] = user_dollars or None
        if server_dollars is not None:
            values["daily_dollars_guild"] = server_dollars or None
        if values:
            await bot.store.update_guild_settings(interaction.guild_id, **values)
        await self._send_limits(interaction, "Saved. " if values else "")

    @quota.command(name="show", description="Show this server's daily limits")
    async def quota_show(self, interaction: discord.Interaction) -> None:
        await self._send_limits(interaction, "")

    async def _send_limits(self, interaction: discord.Interaction, prefix: str) -> None:
        bot = bot_of(interaction)
        limits = await limits_for(bot.store, bot.settings, interaction.guild_id)
        text = (
            f"{prefix}Daily limits (reset at 00:00 UTC):\n"
            f"• per user: {limits.images_per_user if limits.images_per_user is not None else 'no'} image limit, "
            f"{f'${limits.dollars_per_user:.2f}' if limits.dollars_per_user is not None else 'no'} dollar limit\n"
            f"• server: {f'${limits.dollars_guild:.2f}' if limits.dollars_guild is not None else 'no'} dollar budget"
        )
        await interaction.response.send_message(text, ephemeral=True)


def _usage_block(title: str, rows: list[UsageRow]) -> str:
    if not rows:
        return f"__{title}__: nothing"
    images = sum(r.images for r in rows)
    cost = sum(r.cost for r in rows)
    per_model = ", ".join(
        f"{model_display_name(r.model)} {r.images} ({format_cost(r.cost)})" for r in rows
    )
    return f"__{title}__: {images} images, {format_cost(cost)} — {per_model}"


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Account(bot))
