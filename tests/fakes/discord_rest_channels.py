"""REST handlers: channels and their messages (get/edit a channel, list/create/get/edit/delete
messages, replies, the bot's own reactions, typing), in guild channels, threads and DMs. In a DM
the bot cannot post once the user closed their DMs (403 50007) and cannot delete the user's
messages or edit the channel (403 50003). Where the bot is not a member (group DMs, guilds
without it, private threads it was not added to) every call is 403 50001; in a guild channel a
message needs Send Messages (Send Messages in Threads in a thread) and files Attach Files,
else 403 50013. A `nonce` is echoed back; with `enforce_nonce` a
repeat of the author's nonce in the channel within NONCE_WINDOW_S returns the message already
created (404 10008 if it was deleted meanwhile) instead of posting it twice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.discord_gateway import (
    I_DIRECT_MESSAGE_REACTIONS,
    I_GUILD_MESSAGE_REACTIONS,
    I_GUILDS,
)
from tests.fakes.discord_http import CHANNEL, MESSAGE, Req, RouteSpec
from tests.fakes.discord_limits import (
    cannot_message_user,
    check_thread_name,
    dm_action,
    form_error,
    missing_permissions,
    not_author,
    unknown_message,
)
from tests.fakes.discord_state import (
    MT_DEFAULT,
    MT_REPLY,
    P_ATTACH_FILES,
    P_MANAGE_MESSAGES,
    P_SEND_IN_THREADS,
    P_SEND_MESSAGES,
    MessageRecord,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord


class ChannelRoutes:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def routes(self) -> list[RouteSpec]:
        c, m = CHANNEL, MESSAGE
        emoji = r"(?P<emoji>[^/]+)"
        return [
            ("GET", f"/channels/{c}", self.get_channel, True, None),
            ("PATCH", f"/channels/{c}", self.edit_channel, True, None),
            ("GET", f"/channels/{c}/messages", self.list_messages, True, None),
            (
                "POST",
                f"/channels/{c}/messages",
                self.create_message,
                True,
                "/channels/{channel_id}/messages",
            ),
            ("GET", f"/channels/{c}/messages/{m}", self.get_message, True, None),
            (
                "PATCH",
                f"/channels/{c}/messages/{m}",
                self.edit_message,
                True,
                "/channels/{channel_id}/messages/{message_id}",
            ),
            ("DELETE", f"/channels/{c}/messages/{m}", self.delete_message, True, None),
            ("POST", f"/channels/{c}/typing", self.no_content, True, None),
            ("PUT", f"/channels/{c}/messages/{m}/reactions/{emoji}/@me", self.react, True, None),
            ("DELETE", f"/channels/{c}/messages/{m}/reactions/{emoji}/@me", self.react, True, None),
        ]

    async def get_channel(self, req: Req) -> tuple[int, Any]:
        return 200, self.fake.builder.bot_channel(req.params["channel_id"]).payload()

    async def edit_channel(self, req: Req) -> tuple[int, Any]:
        ch = self.fake.builder.bot_channel(req.params["channel_id"])
        if ch.is_dm:
            raise dm_action()
        if not ch.is_thread:
            raise missing_permissions()
        body = req.body
        if "name" in body:
            check_thread_name(body["name"])
            ch.name = body["name"]
        for key in ("archived", "locked"):
            if key in body:
                setattr(ch, key, bool(body[key]))
        if "auto_archive_duration" in body:
            ch.auto_archive_duration = int(body["auto_archive_duration"])
        self.fake.gateway.dispatch("THREAD_UPDATE", ch.payload(), intent=I_GUILDS)
        return 200, ch.payload()

    async def list_messages(self, req: Req) -> tuple[int, Any]:
        state = self.fake.state
        ch = self.fake.builder.bot_channel(req.params["channel_id"])
        limit = max(1, min(100, int(req.query.get("limit", "50"))))
        msgs = state.history(ch.id)
        if "before" in req.query:
            msgs = [m for m in msgs if m.id < int(req.query["before"])]
        if "after" in req.query:
            msgs = [m for m in msgs if m.id > int(req.query["after"])][:limit]
        if "around" in req.query:
            around = int(req.query["around"])
            older = [m for m in msgs if m.id <= around][-(limit // 2 + 1) :]
            newer = [m for m in msgs if m.id > around][: limit - len(older)]
            msgs = older + newer
        picked = msgs[-limit:]
        return 200, [state.message_payload(m) for m in reversed(picked)]

    async def create_message(self, req: Req) -> tuple[int, Any]:
        fake = self.fake
        ch = fake.builder.bot_channel(req.params["channel_id"])
        data = req.body
        nonce = data.get("nonce")
        if nonce is not None and data.get("enforce_nonce"):
            earlier = self._by_nonce(ch.id, nonce)
            if earlier is not None:
                if earlier.deleted:
                    raise unknown_message()
                fake._log(f"NONCE {nonce!r} seen: returning message {earlier.id}, not a new one")
                return 200, fake.state.message_payload(earlier, nonce=True)
        if ch.is_dm and not all(fake.state.accepts_dms(u) for u in ch.recipients):
            raise cannot_message_user()
        if ch.guild_id is not None:
            perms = fake.state.bot_channel_permissions(ch)
            needed = P_SEND_IN_THREADS if ch.is_thread else P_SEND_MESSAGES
            if not perms & needed or (req.files and not perms & P_ATTACH_FILES):
                raise missing_permissions()
        fields: dict[str, Any] = {}
        msg_type = MT_DEFAULT
        ref = data.get("message_reference")
        if isinstance(ref, dict) and ref.get("message_id") is not None:
            target = fake.state.messages.get(int(ref["message_id"]))
            ok = target is not None and not target.deleted and target.visible_to is None
            if (
                ok
                and target is not None
                and target.channel_id != ch.id
                and int(ref.get("type") or 0) == 0
            ):
                ok = False
            if not ok:
                if ref.get("fail_if_not_exists", True):
                    raise form_error(
                        ["message_reference"], "REPLIES_UNKNOWN_MESSAGE", "Unknown message"
                    )
            else:
                assert target is not None
                ref_type = int(ref.get("type") or 0)
                fields["message_reference"] = fake.state.reference_payload(target, ref_type)
                msg_type = MT_REPLY
        msg = await fake.builder.new_message(
            data, req.files, channel=ch, author=fake.bot_user, msg_type=msg_type, **fields
        )
        if nonce is not None:
            msg.nonce = nonce
            key = (ch.id, fake.bot_user.id, str(nonce))
            fake.state.nonces[key] = (msg.id, fake.now())
        fake.events.message("MESSAGE_CREATE", msg)
        fake._bot_message_event(msg)
        return 200, fake.state.message_payload(msg, nonce=True)

    def _by_nonce(self, channel_id: int, nonce: int | str) -> MessageRecord | None:
        """The bot's message with this nonce in the channel, if recent enough to count."""
        fake = self.fake
        seen = fake.state.nonces.get((channel_id, fake.bot_user.id, str(nonce)))
        if seen is None or fake.now() - seen[1] > fake.nonce_window:
            return None
        return fake.state.messages[seen[0]]

    async def get_message(self, req: Req) -> tuple[int, Any]:
        msg = self.fake.builder.channel_message(req.params["channel_id"], req.params["message_id"])
        return 200, self.fake.state.message_payload(msg)

    async def edit_message(self, req: Req) -> tuple[int, Any]:
        fake = self.fake
        msg = fake.builder.channel_message(req.params["channel_id"], req.params["message_id"])
        if msg.author.id != fake.bot_user.id:
            raise not_author()
        await fake.builder.edit_message(msg, req.body, req.files)
        fake.events.message("MESSAGE_UPDATE", msg)
        fake._bot_message_event(msg)
        return 200, fake.state.message_payload(msg)

    async def delete_message(self, req: Req) -> tuple[int, Any]:
        fake = self.fake
        msg = fake.builder.channel_message(req.params["channel_id"], req.params["message_id"])
        bot_id = fake.bot_user.id
        if msg.author.id != bot_id:
            if msg.guild_id is None:
                raise dm_action()  # nobody can delete the other side's messages in a DM
            if not fake.state.permissions(bot_id, msg.guild_id) & P_MANAGE_MESSAGES:
                raise missing_permissions()
        msg.deleted = True
        fake.events.delete(msg)
        fake._bot_message_event(msg)
        return 204, None

    async def react(self, req: Req) -> tuple[int, Any]:
        fake = self.fake
        msg = fake.builder.channel_message(req.params["channel_id"], req.params["message_id"])
        emoji = req.params["emoji"]
        users = msg.reactions.setdefault(emoji, set())
        adding = req.method == "PUT"
        (users.add if adding else users.discard)(fake.bot_user.id)
        event: dict[str, Any] = {
            "user_id": str(fake.bot_user.id),
            "channel_id": str(msg.channel_id),
            "message_id": str(msg.id),
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        if msg.guild_id is not None:
            event["guild_id"] = str(msg.guild_id)
            if adding:
                event["member"] = fake.state.member_payload(fake.bot_user.id, guild_id=msg.guild_id)
        name = "MESSAGE_REACTION_ADD" if adding else "MESSAGE_REACTION_REMOVE"
        in_dm = msg.guild_id is None
        intent = I_DIRECT_MESSAGE_REACTIONS if in_dm else I_GUILD_MESSAGE_REACTIONS
        fake.gateway.dispatch(name, event, intent=intent)
        return 204, None

    async def no_content(self, req: Req) -> tuple[int, Any]:
        self.fake.builder.bot_channel(req.params["channel_id"])
        return 204, None
