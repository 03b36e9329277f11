"""Fake users that drive the bot the way people do: slash commands built from the commands
the bot actually synced, autocomplete, plain messages and replies, button clicks, select
menus, modal submits and message context menus, in guild channels, threads and the user's DM
with the bot (there interactions have Discord's bot-DM shape: `context` 1, `user` instead of
`member`, no guild), and, with the app installed to the user's account (`fake.install_app`),
in group DMs (`context` 2) and in guilds the bot is not in (`context` 0 without the bot):
`authorizing_integration_owners` {"1": user id} and reduced `app_permissions` there.

    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt="a cat", reference=Upload("cat.png", png))
    await ix.wait_ack(); msg = await ix.original()
    ix2 = await alice.click(msg, "Reroll")

Anything a real Discord client would refuse (an unknown command or option, a missing
required option, a value outside the choices, a disabled button) raises AssertionError
with what was available.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.fakes.discord_limits import DEFAULT_UPLOAD_LIMIT, walk_components
from tests.fakes.discord_state import (
    DM_PERMS,
    PRIVATE_CHANNEL_APP_PERMS,
    ChannelRecord,
    DiscordState,
    InteractionRecord,
    MessageRecord,
    UserRecord,
    image_size,
    snowflake_time,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

# Application command option types.
OPT_SUB_COMMAND, OPT_GROUP, OPT_STRING, OPT_INTEGER, OPT_BOOLEAN = 1, 2, 3, 4, 5
OPT_USER, OPT_CHANNEL, OPT_ROLE, OPT_MENTIONABLE, OPT_NUMBER, OPT_ATTACHMENT = 6, 7, 8, 9, 10, 11

# Interaction types.
IX_COMMAND, IX_COMPONENT, IX_AUTOCOMPLETE, IX_MODAL_SUBMIT = 2, 3, 4, 5

# Interaction context types (where a command is used) and installation types.
CTX_GUILD, CTX_BOT_DM, CTX_PRIVATE_CHANNEL = 0, 1, 2
INSTALL_GUILD, INSTALL_USER = 0, 1


@dataclass(frozen=True)
class Upload:
    """A file a fake user attaches (to a message, a command option or a modal)."""

    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None


class FakeInteraction:
    """What a user started; watch how the bot answered it."""

    def __init__(self, fake: FakeDiscord, record: InteractionRecord) -> None:
        self.fake = fake
        self.record = record

    # -- state -------------------------------------------------------------------------
    @property
    def id(self) -> int:
        return self.record.id

    @property
    def acked(self) -> bool:
        return self.record.acked

    @property
    def ack_latency(self) -> float | None:
        return self.record.ack_latency

    @property
    def response_type(self) -> int | None:
        return self.record.response_type

    @property
    def failed(self) -> bool:
        return self.record.failed

    @property
    def fail_reason(self) -> str:
        return self.record.fail_reason

    @property
    def modal(self) -> dict[str, Any] | None:
        return self.record.modal

    @property
    def choices(self) -> list[dict[str, Any]] | None:
        return self.record.choices

    @property
    def followups(self) -> list[MessageRecord]:
        """Messages the bot posted through the followup webhook (after a "thinking" defer the
        first of them is the original response message itself)."""
        return [self.fake.state.messages[m] for m in self.record.followup_ids]

    @property
    def original_message(self) -> MessageRecord | None:
        mid = self.record.original_id
        return self.fake.state.messages.get(mid) if mid is not None else None

    def __repr__(self) -> str:
        r = self.record
        state = f"acked={r.acked} type={r.response_type} failed={r.failed}"
        return f"<FakeInteraction {r.name or r.type} by {r.user.username} {state}>"

    # -- waiting -----------------------------------------------------------------------
    def _raise_if_failed(self) -> None:
        if self.record.failed:
            raise AssertionError(
                f"interaction {self.record.name!r} failed: {self.record.fail_reason}\n"
                f"{self.fake.traffic_dump()}"
            )

    async def wait_ack(self, timeout: float = 5) -> int:  # noqa: ASYNC109
        """The response type (4, 5, 6, 7, 8 or 9) once the bot acknowledged."""
        await self.fake._wait(
            lambda: self.record.acked or self.record.failed,
            timeout,
            f"the bot to acknowledge {self.record.name!r}",
        )
        self._raise_if_failed()
        assert self.record.response_type is not None
        return self.record.response_type

    async def wait_failed(self, timeout: float = 5) -> str:  # noqa: ASYNC109
        """Wait until Discord marks the interaction failed; returns the reason."""
        await self.fake._wait(lambda: self.record.failed, timeout, f"{self.record.name!r} to fail")
        return self.record.fail_reason

    async def original(self, timeout: float = 10) -> MessageRecord:  # noqa: ASYNC109
        """The original response message, once it has real content (not "thinking…").
        After a deferred update (6) it is the clicked message, once the bot edited it."""
        record = self.record
        started = snowflake_time(record.id)

        def ready() -> bool:
            if record.failed or record.response_type in (8, 9):
                return True
            msg = self.original_message
            if msg is None or msg.loading:
                return False
            if record.response_type == 6:  # the clicked message, once the bot edited it
                return msg.edited_at is not None and msg.edited_at >= started
            return True

        await self.fake._wait(ready, timeout, f"the original response to {record.name!r}")
        self._raise_if_failed()
        if record.response_type == 9:
            raise AssertionError(
                f"the bot answered {record.name!r} with a modal, not a message: {record.modal}"
            )
        if record.response_type == 8:
            raise AssertionError(f"{record.name!r} was an autocomplete; see .choices")
        msg = self.original_message
        assert msg is not None
        return msg

    async def wait_followups(self, count: int = 1, timeout: float = 10) -> list[MessageRecord]:  # noqa: ASYNC109
        await self.fake._wait(
            lambda: len(self.record.followup_ids) >= count or self.record.failed,
            timeout,
            f"{count} followup message(s) for {self.record.name!r}",
        )
        self._raise_if_failed()
        return self.followups


class FakeUser:
    """A guild member acting through the Discord client."""

    def __init__(self, fake: FakeDiscord, record: UserRecord) -> None:
        self.fake = fake
        self.record = record

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.username

    @property
    def mention(self) -> str:
        return self.record.mention

    def __repr__(self) -> str:
        return f"<FakeUser {self.name} id={self.id}>"

    @property
    def dm_channel(self) -> int:
        """The id of this user's DM with the bot (opened on first use)."""
        return self.fake.dm_channel(self.record)

    def ephemeral_messages(self) -> list[MessageRecord]:
        """Ephemeral bot messages only this user can see, oldest first."""
        return [
            m
            for m in self.fake.state.messages.values()
            if m.visible_to == self.id and not m.deleted
        ]

    # -- messages ----------------------------------------------------------------------
    async def say(
        self, channel: int | str, text: str = "", *, files: Sequence[Upload] = ()
    ) -> MessageRecord:
        """Post a plain message in a channel (name or id), thread (id) or this user's DM (id)."""
        ch = self._channel(channel)
        self.fake._mark_action(
            f"{self.name} says in {_where(ch)}: {text[:60]!r}" + _files_note(files)
        )
        return await self.fake.actions.user_message(self.record, ch, text, _file_tuples(files))

    async def dm(self, text: str = "", *, files: Sequence[Upload] = ()) -> MessageRecord:
        """Send the bot a direct message (MESSAGE_CREATE without guild_id)."""
        return await self.say(self.dm_channel, text, files=files)

    async def reply(
        self,
        message: MessageRecord | int,
        text: str = "",
        *,
        files: Sequence[Upload] = (),
        mention: bool = True,
    ) -> MessageRecord:
        """Reply to a message (message_reference set; pings its author unless mention=False)."""
        target = self._message(message)
        if target.visible_to is not None:
            raise AssertionError("ephemeral messages cannot be replied to")
        ch = self._channel(target.channel_id)
        self.fake._mark_action(
            f"{self.name} replies to {target.id}: {text[:60]!r}" + _files_note(files)
        )
        return await self.fake.actions.user_message(
            self.record, ch, text, _file_tuples(files), reference=target, mention_author=mention
        )

    # -- application commands ------------------------------------------------------------
    async def slash(
        self,
        command: str,
        *,
        channel: int | str = "general",
        options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> FakeInteraction:
        """Run /command (with "group sub" paths such as "anchor save") with options."""
        values = {**(options or {}), **kwargs}
        ch = self._channel(channel)
        cmd, path, defs = self._command(command, ch)
        owners = self._offer(cmd, ch)
        self._check_options(command, defs, values)
        resolved: dict[str, dict[str, Any]] = {}
        leaf = [
            self._option_value(command, d, values[d["name"]], resolved, ch)
            for d in defs
            if d["name"] in values
        ]
        data = self._command_data(cmd, path, leaf, resolved)
        desc = " ".join(f"{k}={_short(v)}" for k, v in values.items())
        return self._start(
            IX_COMMAND,
            data,
            ch,
            name=command,
            describe=f"{self.name} /{command} {desc}",
            owners=owners,
        )

    async def autocomplete(
        self,
        command: str,
        option: str,
        value: str = "",
        *,
        channel: int | str = "general",
        timeout: float = 3.5,  # noqa: ASYNC109
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Type `value` into `option` of /command; returns the bot's choices [{name, value}]."""
        ch = self._channel(channel)
        cmd, path, defs = self._command(command, ch)
        by_name = {d["name"]: d for d in defs}
        if option not in by_name:
            raise AssertionError(f"/{command} has no option {option!r}; options: {sorted(by_name)}")
        if not by_name[option].get("autocomplete"):
            raise AssertionError(f"/{command} option {option!r} does not use autocomplete")
        unknown = [k for k in kwargs if k not in by_name]
        if unknown:
            raise AssertionError(
                f"/{command} has no option(s) {unknown}; options: {sorted(by_name)}"
            )
        leaf = []
        for d in defs:
            if d["name"] == option:
                leaf.append({"name": option, "type": d["type"], "value": value, "focused": True})
            elif d["name"] in kwargs:
                leaf.append(
                    {"name": d["name"], "type": d["type"], "value": _loose_value(kwargs[d["name"]])}
                )
        data = self._command_data(cmd, path, leaf, {})
        ix = self._start(
            IX_AUTOCOMPLETE,
            data,
            ch,
            name=command,
            describe=f"{self.name} autocompletes /{command} {option}={value!r}",
            owners=self._offer(cmd, ch),
        )
        await ix.wait_ack(timeout)
        if ix.response_type != 8 or ix.choices is None:
            raise AssertionError(
                f"autocomplete for /{command} got response type {ix.response_type}, not 8"
            )
        return ix.choices

    async def context_menu(
        self,
        name: str,
        target: MessageRecord | int | FakeUser | UserRecord,
        *,
        channel: int | str | None = None,
    ) -> FakeInteraction:
        """Apps ▸ name on a message (message command) or on a user (user command); a user
        command runs in `channel` (default #general; a DM id works too)."""
        state = self.fake.state
        resolved: dict[str, Any]
        if isinstance(target, FakeUser | UserRecord):
            user = target.record if isinstance(target, FakeUser) else target
            ch = self._channel(channel or "general")
            cmd = self._find_command(name, 2, ch)
            resolved = {"users": {str(user.id): user.payload()}}
            if ch.guild_id is not None and user.id in state.guild(ch.guild_id).members:
                resolved["members"] = {
                    str(user.id): state.member_payload(
                        user.id, with_user=False, permissions=True, guild_id=ch.guild_id
                    )
                }
            target_id = user.id
        else:
            msg = self._message(target)
            if msg.visible_to is not None and msg.visible_to != self.id:
                raise AssertionError("that ephemeral message is not visible to this user")
            ch = self._channel(msg.channel_id)
            cmd = self._find_command(name, 3, ch)
            resolved = {"messages": {str(msg.id): state.message_payload(msg)}}
            target_id = msg.id
        self._check_permission(cmd, ch)
        data: dict[str, Any] = {
            "id": cmd["id"],
            "name": cmd["name"],
            "type": cmd["type"],
            "target_id": str(target_id),
            "resolved": resolved,
        }
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return self._start(
            IX_COMMAND,
            data,
            ch,
            name=name,
            describe=f"{self.name} context menu {name!r} on {target_id}",
            owners=self._offer(cmd, ch),
        )

    # -- components ----------------------------------------------------------------------
    async def click(
        self,
        message: MessageRecord | int,
        label: str | None = None,
        *,
        custom_id: str | None = None,
    ) -> FakeInteraction:
        """Click a button found by its label (or custom_id)."""
        msg = self._visible_message(message)
        buttons = [c for c in walk_components(msg.components) if c.get("type") == 2]
        button = _pick(buttons, label, custom_id)
        if button is None:
            have = [(b.get("label"), b.get("custom_id")) for b in buttons]
            raise AssertionError(
                f"no button {label or custom_id!r} on message {msg.id}; buttons: {have}"
            )
        if button.get("disabled"):
            raise AssertionError(f"button {label or custom_id!r} is disabled")
        if button.get("style") in (5, 6) or not button.get("custom_id"):
            raise AssertionError(
                f"button {label or custom_id!r} is a link/premium button: no interaction"
            )
        data: dict[str, Any] = {"custom_id": button["custom_id"], "component_type": 2}
        if isinstance(button.get("id"), int):
            data["id"] = button["id"]
        return self._component(
            msg, data, f"{self.name} clicks {button.get('label') or button['custom_id']!r}"
        )

    async def select(
        self,
        message: MessageRecord | int,
        values: Sequence[str],
        *,
        custom_id: str | None = None,
        placeholder: str | None = None,
    ) -> FakeInteraction:
        """Choose option values in a string select menu (by custom_id or placeholder)."""
        msg = self._visible_message(message)
        selects = [c for c in walk_components(msg.components) if c.get("type") == 3]
        menu = next(
            (
                s
                for s in selects
                if (custom_id and s.get("custom_id") == custom_id)
                or (placeholder and s.get("placeholder") == placeholder)
                or (not custom_id and not placeholder)
            ),
            None,
        )
        if menu is None:
            raise AssertionError(f"no select menu {custom_id or placeholder!r} on message {msg.id}")
        allowed = {str(o.get("value")) for o in menu.get("options") or []}
        wrong = [v for v in values if v not in allowed]
        if wrong:
            raise AssertionError(
                f"values {wrong} are not options of the menu; options: {sorted(allowed)}"
            )
        lo, hi = int(menu.get("min_values", 1)), int(menu.get("max_values", 1))
        if not lo <= len(values) <= hi:
            raise AssertionError(f"the menu takes {lo}..{hi} values, got {len(values)}")
        data = {"custom_id": menu["custom_id"], "component_type": 3, "values": list(values)}
        return self._component(msg, data, f"{self.name} selects {list(values)}")

    async def submit_modal(
        self,
        opened_by: FakeInteraction,
        values: Mapping[str, Any],
        *,
        timeout: float = 5,  # noqa: ASYNC109
    ) -> FakeInteraction:
        """Fill the modal the bot opened in answer to `opened_by` (keys: custom_id or label)."""
        if opened_by.modal is None and not opened_by.failed:
            await opened_by.wait_ack(timeout)
        modal = opened_by.modal
        if modal is None:
            raise AssertionError(
                f"the bot did not open a modal for {opened_by.record.name!r} "
                f"(response type {opened_by.response_type})"
            )
        resolved: dict[str, dict[str, Any]] = {}
        used: set[str] = set()
        components = [
            c
            for c in (
                self._modal_component(comp, values, used, resolved, None)
                for comp in modal.get("components") or []
            )
            if c is not None
        ]
        unknown = set(values) - used
        if unknown:
            fields = [
                f"{c.get('custom_id')} ({c.get('label', '')})"
                for c in walk_components(modal.get("components") or [])
                if c.get("custom_id")
            ]
            raise AssertionError(
                f"modal {modal.get('title')!r} has no field(s) {sorted(unknown)}; fields: {fields}"
            )
        data: dict[str, Any] = {"custom_id": modal["custom_id"], "components": components}
        if resolved:
            data["resolved"] = resolved
        parent = opened_by.record
        shown = {k: _short(v) for k, v in values.items()}
        ch = self.fake.state.channels[parent.channel_id]
        message = self.fake.state.messages.get(parent.message_id) if parent.message_id else None
        return self._start(
            IX_MODAL_SUBMIT,
            data,
            ch,
            name=f"modal:{modal['custom_id']}",
            message=message,
            parent=parent,
            describe=f"{self.name} submits modal {modal.get('title')!r} {shown}",
            owners=dict(parent.payload.get("authorizing_integration_owners") or {}) or None,
        )

    # -- internals -------------------------------------------------------------------------
    def _message(self, message: MessageRecord | int) -> MessageRecord:
        mid = message.id if isinstance(message, MessageRecord) else int(message)
        msg = self.fake.state.messages.get(mid)
        if msg is None or msg.deleted:
            raise AssertionError(f"message {mid} does not exist (or was deleted)")
        return msg

    def _visible_message(self, message: MessageRecord | int) -> MessageRecord:
        msg = self._message(message)
        if msg.visible_to is not None and msg.visible_to != self.id:
            raise AssertionError(f"message {msg.id} is ephemeral and not visible to {self.name}")
        self._channel(msg.channel_id)
        return msg

    def _channel(self, ref: int | str) -> ChannelRecord:
        """A channel this user can see (not someone else's DM or group DM, not a guild they
        are not in, not a private thread they were not added to)."""
        state = self.fake.state
        ch = state.channel_by_ref(ref)
        if ch.is_private and self.record not in ch.recipients:
            raise AssertionError(f"{self.name} is not in that DM ({_where(ch)})")
        if ch.guild_id is not None and self.id not in state.guild(ch.guild_id).members:
            guild = state.guild(ch.guild_id)
            raise AssertionError(f"{self.name} is not a member of {guild.name!r}")
        if not state.user_can_view(self.record, ch):
            raise AssertionError(f"{self.name} is not a member of the private thread {ch.name!r}")
        return ch

    def _component(
        self, msg: MessageRecord, data: dict[str, Any], describe: str
    ) -> FakeInteraction:
        ch = self._channel(msg.channel_id)
        # A component answers for the installation its message came from.
        meta = msg.interaction_metadata or {}
        owners = dict(meta.get("authorizing_integration_owners") or {}) or None
        return self._start(
            IX_COMPONENT,
            data,
            ch,
            name=str(data["custom_id"]),
            message=msg,
            describe=describe,
            owners=owners,
        )

    def _commands_in(self, channel: ChannelRecord) -> list[dict[str, Any]]:
        """What the client offers in `channel`: the guild's commands (where the bot is), then
        global ones whose installation and contexts allow it (see _offer)."""
        state = self.fake.state
        guild_cmds: list[dict[str, Any]] = []
        if channel.guild_id is not None and state.guild(channel.guild_id).bot_member:
            guild_cmds = state.guild_commands.get(channel.guild_id, [])
        return [c for c in [*guild_cmds, *state.global_commands] if self._offer(c, channel)]

    def _offer(self, cmd: Mapping[str, Any], channel: ChannelRecord) -> dict[str, str] | None:
        """The installations that authorize `cmd` for this user in `channel` (Discord's
        authorizing_integration_owners: "0" a guild install, with the guild's id or "0" in
        the bot's DM; "1" the user's own install), or None if the client does not offer it.

        A guild install reaches the guilds the bot is in and the bot's DM; a user install
        (fake.install_app) reaches every guild, the bot's DM and group DMs, for commands whose
        integration_types include 1. `contexts` (else dm_permission) narrows where."""
        state = self.fake.state
        installs = cmd.get("integration_types")
        installs = [INSTALL_GUILD] if installs is None else list(installs)
        mine = self.id in state.user_installs and INSTALL_USER in installs
        contexts = cmd.get("contexts")
        owners: dict[str, str] = {}
        if cmd.get("guild_id"):  # a guild command: that guild, with the bot, only
            gid = channel.guild_id
            ok = gid is not None and int(cmd["guild_id"]) == gid and state.guild(gid).bot_member
            return {"0": str(gid)} if ok else None
        if channel.is_group_dm:
            if not mine or (contexts is not None and CTX_PRIVATE_CHANNEL not in contexts):
                return None
            return {"1": str(self.id)}
        if channel.is_dm:
            allowed = (
                CTX_BOT_DM in contexts
                if contexts is not None
                else cmd.get("dm_permission") is not False
            )
            if not allowed:
                return None
            if INSTALL_GUILD in installs:
                owners["0"] = "0"
        else:
            if contexts is not None and CTX_GUILD not in contexts:
                return None
            guild = state.guild(channel.guild_id)
            if guild.bot_member and INSTALL_GUILD in installs:
                owners["0"] = str(guild.id)
        if mine:
            owners["1"] = str(self.id)
        return owners or None

    def _find_command(self, name: str, ctype: int, channel: ChannelRecord) -> dict[str, Any]:
        offered = self._commands_in(channel)
        for cmd in offered:
            if cmd["name"] == name and int(cmd.get("type") or 1) == ctype:
                return cmd
        have = sorted({c["name"] for c in offered if int(c.get("type") or 1) == ctype})
        kind = {1: "slash command", 2: "user command", 3: "message command"}[ctype]
        state = self.fake.state
        every = [c for cmds in state.guild_commands.values() for c in cmds]
        elsewhere = [
            c
            for c in every + state.global_commands
            if c["name"] == name and int(c.get("type") or 1) == ctype
        ]
        if elsewhere:
            raise AssertionError(
                f"the {kind} {name!r} is not available in {_where(channel)} "
                "(another guild's command, its contexts/dm_permission exclude it, or the app "
                f"is not installed there: fake.install_app(user)); there: {have}"
            )
        raise AssertionError(f"the bot has not synced a {kind} named {name!r}; synced: {have}")

    def _check_permission(self, cmd: Mapping[str, Any], channel: ChannelRecord) -> None:
        needed = cmd.get("default_member_permissions")
        if needed in (None, "") or channel.is_private:  # member permissions: not in DMs
            return
        if "0" not in (self._offer(cmd, channel) or {}):
            return  # a user install in a guild without the bot: the guild sets nothing
        need = int(needed)
        if self.fake.state.permissions(self.id, channel.guild_id) & need != need:
            raise AssertionError(
                f"{self.name} cannot see /{cmd['name']}: it needs permissions {need}"
            )

    def _command(
        self, command: str, channel: ChannelRecord
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        parts = command.strip().lstrip("/").split()
        cmd = self._find_command(parts[0], 1, channel)
        self._check_permission(cmd, channel)
        path: list[dict[str, Any]] = []
        defs: list[dict[str, Any]] = list(cmd.get("options") or [])
        for part in parts[1:]:
            sub = next(
                (
                    o
                    for o in defs
                    if o["name"] == part and o["type"] in (OPT_SUB_COMMAND, OPT_GROUP)
                ),
                None,
            )
            if sub is None:
                subs = [o["name"] for o in defs if o["type"] in (OPT_SUB_COMMAND, OPT_GROUP)]
                raise AssertionError(
                    f"/{' '.join(parts[: len(path) + 1])} has no subcommand {part!r}; has {subs}"
                )
            path.append(sub)
            defs = list(sub.get("options") or [])
        if any(o["type"] in (OPT_SUB_COMMAND, OPT_GROUP) for o in defs):
            subs = [o["name"] for o in defs if o["type"] in (OPT_SUB_COMMAND, OPT_GROUP)]
            raise AssertionError(f"/{command} needs a subcommand: one of {subs}")
        return cmd, path, defs

    @staticmethod
    def _command_data(
        cmd: Mapping[str, Any],
        path: list[dict[str, Any]],
        leaf: list[dict[str, Any]],
        resolved: dict[str, Any],
    ) -> dict[str, Any]:
        options: list[dict[str, Any]] = leaf
        for sub in reversed(path):
            options = [{"name": sub["name"], "type": sub["type"], "options": options}]
        data: dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": 1, "options": options}
        if resolved:
            data["resolved"] = resolved
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return data

    def _check_options(
        self, command: str, defs: list[dict[str, Any]], values: Mapping[str, Any]
    ) -> None:
        names = {d["name"] for d in defs}
        unknown = [k for k in values if k not in names]
        if unknown:
            described = [f"{d['name']}{'*' if d.get('required') else ''}" for d in defs]
            raise AssertionError(f"/{command} has no option(s) {unknown}; options: {described}")
        missing = [d["name"] for d in defs if d.get("required") and d["name"] not in values]
        if missing:
            raise AssertionError(f"/{command} needs required option(s) {missing}")

    def _option_value(
        self,
        command: str,
        d: Mapping[str, Any],
        value: Any,
        resolved: dict[str, dict[str, Any]],
        channel: ChannelRecord,
    ) -> dict[str, Any]:
        state = self.fake.state
        otype, name = d["type"], d["name"]
        where = f"/{command} {name}"
        out: dict[str, Any] = {"name": name, "type": otype}
        if otype == OPT_STRING:
            text = str(value)
            lo, hi = d.get("min_length", 0), d.get("max_length", 6000)
            if not lo <= len(text) <= hi:
                raise AssertionError(
                    f"{where}: Discord allows {lo}..{hi} characters, got {len(text)}"
                )
            out["value"] = text
        elif otype in (OPT_INTEGER, OPT_NUMBER):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (otype == OPT_INTEGER and not isinstance(value, int))
            ):
                raise AssertionError(
                    f"{where} takes {'an integer' if otype == OPT_INTEGER else 'a number'}, "
                    f"got {value!r}"
                )
            if ("min_value" in d and value < d["min_value"]) or (
                "max_value" in d and value > d["max_value"]
            ):
                raise AssertionError(
                    f"{where} must be within {d.get('min_value')}..{d.get('max_value')}"
                )
            out["value"] = value
        elif otype == OPT_BOOLEAN:
            if not isinstance(value, bool):
                raise AssertionError(f"{where} takes True/False, got {value!r}")
            out["value"] = value
        elif otype in (OPT_USER, OPT_MENTIONABLE) and not (
            otype == OPT_MENTIONABLE and _is_role_ref(state, channel, value)
        ):
            user = (
                value.record
                if isinstance(value, FakeUser)
                else value
                if isinstance(value, UserRecord)
                else state.user_by_name(str(value))
            )
            resolved.setdefault("users", {})[str(user.id)] = user.payload()
            gid = channel.guild_id
            if gid is not None and user.id in state.guild(gid).members:
                resolved.setdefault("members", {})[str(user.id)] = state.member_payload(
                    user.id, with_user=False, permissions=True, guild_id=gid
                )
            out["value"] = str(user.id)
        elif otype in (OPT_ROLE, OPT_MENTIONABLE):
            if channel.guild_id is None:
                raise AssertionError(f"{where}: there are no roles to pick in a DM")
            role = next(
                (
                    r
                    for r in state.guild(channel.guild_id).roles.values()
                    if r.name == str(value).lstrip("@") or str(r.id) == str(value)
                ),
                None,
            )
            if role is None:
                raise AssertionError(f"{where}: no role {value!r}")
            resolved.setdefault("roles", {})[str(role.id)] = role.payload()
            out["value"] = str(role.id)
        elif otype == OPT_CHANNEL:
            ch = state.channel_by_ref(value, channel.guild_id)
            if d.get("channel_types") and ch.type not in d["channel_types"]:
                raise AssertionError(
                    f"{where} accepts channel types {d['channel_types']}, not {ch.type}"
                )
            if ch.guild_id != channel.guild_id:
                raise AssertionError(f"{where}: {_where(ch)} is not in this server")
            perms = DM_PERMS if ch.guild_id is None else state.permissions(self.id, ch.guild_id)
            resolved.setdefault("channels", {})[str(ch.id)] = _resolved_channel(ch, perms)
            out["value"] = str(ch.id)
        elif otype == OPT_ATTACHMENT:
            if not isinstance(value, Upload):
                raise AssertionError(
                    f"{where} takes an Upload(filename, bytes), got {type(value).__name__}"
                )
            att = self._upload(value)
            resolved.setdefault("attachments", {})[str(att["id"])] = att
            out["value"] = str(att["id"])
        else:
            raise AssertionError(f"{where}: unsupported option type {otype}")
        choices = d.get("choices")
        if choices and out["value"] not in [c["value"] for c in choices]:
            names = [f"{c['name']}={c['value']!r}" for c in choices]
            raise AssertionError(f"{where}: {value!r} is not one of the choices {names}")
        return out

    def _upload(self, upload: Upload) -> dict[str, Any]:
        att = self.fake.state.make_attachment(
            upload.filename,
            upload.data,
            channel_id=self.fake.application_id,
            content_type=upload.content_type,
            description=upload.description,
            ephemeral=True,
            size=image_size(upload.data),
        )
        return att.payload()

    def _modal_component(
        self,
        comp: Mapping[str, Any],
        values: Mapping[str, Any],
        used: set[str],
        resolved: dict[str, dict[str, Any]],
        label: str | None,
    ) -> dict[str, Any] | None:
        ctype = comp.get("type")
        cid = comp.get("id")
        if ctype == 1:
            inner = [
                self._modal_component(c, values, used, resolved, None)
                for c in comp.get("components") or []
            ]
            return {"type": 1, "id": cid, "components": [c for c in inner if c is not None]}
        if ctype == 18:
            inner_comp = self._modal_component(
                comp["component"], values, used, resolved, comp.get("label")
            )
            return {"type": 18, "id": cid, "component": inner_comp}
        if ctype == 10:
            return {"type": 10, "id": cid}
        custom_id = comp.get("custom_id")
        if not custom_id:
            return None
        own_label = label or comp.get("label")
        key = custom_id if custom_id in values else own_label if own_label in values else None
        if key is not None:
            used.add(key)
        value = values.get(key) if key is not None else None
        field = f"{own_label or custom_id!r}"
        if ctype == 4:
            text = str(value) if value is not None else str(comp.get("value") or "")
            if comp.get("required", True) and not text:
                raise AssertionError(f"modal field {field} is required")
            lo, hi = int(comp.get("min_length") or 0), int(comp.get("max_length") or 4000)
            if text and not lo <= len(text) <= hi:
                raise AssertionError(
                    f"modal field {field} takes {lo}..{hi} characters, got {len(text)}"
                )
            return {"type": 4, "id": cid, "custom_id": custom_id, "value": text}
        if ctype == 19:
            uploads = list(value or [])
            ids = []
            for up in uploads:
                att = self._upload(up)
                resolved.setdefault("attachments", {})[str(att["id"])] = att
                ids.append(str(att["id"]))
            if comp.get("required", True) and not ids:
                raise AssertionError(f"modal file field {field} is required")
            return {"type": 19, "id": cid, "custom_id": custom_id, "values": ids}
        if ctype == 3 or ctype in (5, 6, 7, 8):
            chosen = [
                str(v)
                for v in (
                    value
                    if isinstance(value, list | tuple)
                    else [value]
                    if value is not None
                    else []
                )
            ]
            if ctype == 3:
                allowed = {str(o.get("value")) for o in comp.get("options") or []}
                if set(chosen) - allowed:
                    raise AssertionError(
                        f"modal select {field}: {chosen} not in options {sorted(allowed)}"
                    )
                if not chosen:
                    chosen = [
                        str(o["value"]) for o in comp.get("options") or [] if o.get("default")
                    ]
            return {"type": ctype, "id": cid, "custom_id": custom_id, "values": chosen}
        return {"type": ctype, "id": cid, "custom_id": custom_id, "value": value}

    def _guild_payload(self, channel: ChannelRecord) -> dict[str, Any]:
        """The fields of an interaction started in a guild channel or thread (context 0)."""
        fake, state = self.fake, self.fake.state
        gid = channel.guild_id
        assert gid is not None
        channel_payload = channel.payload()
        channel_payload["permissions"] = str(state.permissions(self.id, gid))
        return {
            "guild": {"id": str(gid), "locale": "en-US", "features": []},
            "guild_id": str(gid),
            "guild_locale": "en-US",
            "channel": channel_payload,
            "member": state.member_payload(self.id, permissions=True, guild_id=gid),
            # the bot's role there; in a guild without the bot, @everyone's plus attach/embed
            "app_permissions": str(state.bot_channel_permissions(channel)),
            "authorizing_integration_owners": {"0": str(gid)},
            "context": CTX_GUILD,
            "attachment_size_limit": fake.upload_limit_in(channel),
        }

    def _dm_payload(self, channel: ChannelRecord) -> dict[str, Any]:
        """The fields of an interaction started in the user's DM with the bot (context 1):
        `user` instead of `member`, no guild, GUILD_INSTALL authorized as "0"."""
        return {
            "channel": channel.payload(),
            "user": self.record.payload(),
            "app_permissions": str(DM_PERMS),
            "authorizing_integration_owners": {"0": "0"},
            "context": CTX_BOT_DM,
            "attachment_size_limit": DEFAULT_UPLOAD_LIMIT,
        }

    def _private_payload(self, channel: ChannelRecord) -> dict[str, Any]:
        """The fields of an interaction in a group DM (context 2, only through a user
        install): `user`, no guild, the group DM as `channel`, the few app_permissions an
        interaction response has there."""
        return {
            "channel": channel.payload(),
            "user": self.record.payload(),
            "app_permissions": str(PRIVATE_CHANNEL_APP_PERMS),
            "authorizing_integration_owners": {"1": str(self.id)},
            "context": CTX_PRIVATE_CHANNEL,
            "attachment_size_limit": DEFAULT_UPLOAD_LIMIT,
        }

    def _start(
        self,
        itype: int,
        data: dict[str, Any],
        channel: ChannelRecord,
        *,
        name: str,
        describe: str,
        message: MessageRecord | None = None,
        parent: InteractionRecord | None = None,
        owners: dict[str, str] | None = None,
    ) -> FakeInteraction:
        fake, state = self.fake, self.fake.state
        ix_id = state.ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        if channel.is_group_dm:
            payload = self._private_payload(channel)
        elif channel.is_dm:
            payload = self._dm_payload(channel)
        else:
            payload = self._guild_payload(channel)
        if owners:
            payload["authorizing_integration_owners"] = dict(owners)
        elif channel.guild_id is not None and not state.guild(channel.guild_id).bot_member:
            payload["authorizing_integration_owners"] = {"1": str(self.id)}
        payload.update(
            id=str(ix_id),
            application_id=str(fake.application_id),
            type=itype,
            data=data,
            channel_id=str(channel.id),
            token=token,
            version=1,
            locale="en-US",
            entitlements=[],
            entitlement_sku_ids=[],
        )
        if message is not None:
            payload["message"] = state.message_payload(message)
        record = InteractionRecord(
            id=ix_id,
            token=token,
            type=itype,
            user=self.record,
            channel_id=channel.id,
            data=data,
            created=fake.now(),
            payload=payload,
            name=name,
            message_id=message.id if message is not None else None,
            parent_id=parent.id if parent is not None else None,
        )
        fake._mark_action(describe)
        fake.actions.start_interaction(record)
        return FakeInteraction(fake, record)


def _where(ch: ChannelRecord) -> str:
    if ch.is_group_dm:
        return "the group DM of " + ", ".join(u.username for u in ch.recipients)
    if ch.is_dm:
        return "the DM with " + ", ".join(u.username for u in ch.recipients)
    return f"#{ch.name}"


def _pick(
    items: Iterable[Mapping[str, Any]], label: str | None, custom_id: str | None
) -> Mapping[str, Any] | None:
    items = list(items)
    if custom_id is not None:
        return next((i for i in items if i.get("custom_id") == custom_id), None)
    if label is None:
        return items[0] if len(items) == 1 else None
    exact = next((i for i in items if i.get("label") == label), None)
    if exact is not None:
        return exact
    return next((i for i in items if str(i.get("label") or "").lower() == label.lower()), None)


def _is_role_ref(state: DiscordState, channel: ChannelRecord, value: Any) -> bool:
    if channel.guild_id is None or not isinstance(value, str):
        return False
    return any(r.name == value.lstrip("@") for r in state.guild(channel.guild_id).roles.values())


def _resolved_channel(ch: ChannelRecord, permissions: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(ch.id),
        "name": ch.name,
        "type": ch.type,
        "permissions": str(permissions),
    }
    payload = ch.payload()
    for key in ("parent_id", "thread_metadata"):
        if key in payload:
            out[key] = payload[key]
    return out


def _loose_value(value: Any) -> Any:
    if isinstance(value, FakeUser):
        return str(value.id)
    if isinstance(value, Upload):
        return value.filename
    return value


def _file_tuples(files: Sequence[Upload]) -> list[tuple[str, bytes, str | None]]:
    return [(f.filename, f.data, f.content_type) for f in files]


def _files_note(files: Sequence[Upload]) -> str:
    return f" files={[f.filename for f in files]}" if files else ""


def _short(value: Any) -> str:
    if isinstance(value, Upload):
        return f"<{value.filename} {len(value.data)}B>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
