"""Message records from request bodies: new messages and edits with Discord's semantics
(limits checked, uploaded files become signed attachments, `attachment://` embeds, component
ids, mentions, "attachments in an edit = what to keep"), and the channel/message look-ups the
REST handlers share (404 10003 / 10008).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tests.fakes.discord_http import UploadedFile
from tests.fakes.discord_limits import (
    FLAG_COMPONENTS_V2,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    MAX_ATTACHMENTS,
    check_file_sizes,
    check_message,
    empty_message,
    form_error,
    missing_access,
    unknown_channel,
    unknown_message,
    walk_components,
)
from tests.fakes.discord_state import (
    MT_DEFAULT,
    AttachmentRecord,
    ChannelRecord,
    MessageRecord,
    UserRecord,
    image_size,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

EDITABLE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2
CREATE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2


class MessageBuilder:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    # -- look-ups ------------------------------------------------------------------------
    def channel(self, channel_id: str | int) -> ChannelRecord:
        """Any channel (interaction responses reach places the bot itself cannot)."""
        ch = self.fake.state.channels.get(int(channel_id))
        if ch is None:
            raise unknown_channel()
        return ch

    def bot_channel(self, channel_id: str | int) -> ChannelRecord:
        """A channel the bot's own REST calls may use: 403 50001 where it is not a member (a
        group DM, a guild without it, a private thread it was not added to)."""
        ch = self.channel(channel_id)
        if not self.fake.state.bot_can_view(ch):
            raise missing_access()
        return ch

    def channel_message(self, channel_id: str, message_id: str) -> MessageRecord:
        self.bot_channel(channel_id)
        msg = self.fake.state.messages.get(int(message_id))
        if (
            msg is None
            or msg.deleted
            or msg.channel_id != int(channel_id)
            or msg.visible_to is not None
        ):
            raise unknown_message()
        return msg

    def mentions(self, content: str) -> list[UserRecord]:
        ids = {int(x) for x in re.findall(r"<@!?(\d+)>", content)}
        return [u for uid, u in self.fake.state.users.items() if uid in ids]

    # -- building ------------------------------------------------------------------------
    async def attachments_from(
        self, files: list[UploadedFile], meta: list[Mapping[str, Any]] | None, channel_id: int
    ) -> list[AttachmentRecord]:
        by_index = {}
        for entry in meta or []:
            with contextlib.suppress(TypeError, ValueError, KeyError):
                by_index[int(entry["id"])] = entry
        out = []
        for f in sorted(files, key=lambda f: f.index):
            info = by_index.get(f.index, {})
            filename = str(info.get("filename") or f.filename)
            size = image_size(f.data)
            out.append(
                self.fake.state.make_attachment(
                    filename,
                    f.data,
                    channel_id=channel_id,
                    description=info.get("description"),
                    size=size,
                    title=info.get("title"),
                )
            )
        return out

    @staticmethod
    def assign_component_ids(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
        comps = json.loads(json.dumps(components))
        used = {c["id"] for c in walk_components(comps) if isinstance(c.get("id"), int)}
        counter = 1
        for comp in walk_components(comps):
            if not isinstance(comp.get("id"), int):
                while counter in used:
                    counter += 1
                comp["id"] = counter  # type: ignore[index]
                used.add(counter)
        return comps

    def resolve_embeds(
        self, embeds: list[dict[str, Any]], pool: list[AttachmentRecord]
    ) -> tuple[list[dict[str, Any]], list[AttachmentRecord]]:
        """attachment://name in embeds -> the file's URL; such files belong to the embed."""
        by_name = {a.filename: a for a in pool}
        by_url = {a.url: a for a in pool}
        consumed: list[AttachmentRecord] = []
        out = []
        for embed in embeds:
            e = json.loads(json.dumps(embed))
            e.setdefault("type", "rich")
            slots: list[tuple[dict[str, Any], str]] = []
            for key in ("image", "thumbnail", "video"):
                if isinstance(e.get(key), dict):
                    slots.append((e[key], "url"))
            for key in ("author", "footer"):
                if isinstance(e.get(key), dict):
                    slots.append((e[key], "icon_url"))
            for holder, url_key in slots:
                url = holder.get(url_key)
                if not isinstance(url, str):
                    continue
                att = (
                    by_name.get(url[len("attachment://") :])
                    if url.startswith("attachment://")
                    else by_url.get(url)
                )
                if url.startswith("attachment://") and att is None:
                    self.fake._log(
                        f"WARN embed refers to {url} but no such file was uploaded: dropped"
                    )
                    holder.pop(url_key, None)
                    continue
                if att is not None:
                    holder[url_key] = att.url
                    holder["proxy_" + url_key] = att.url
                    if att.width is not None and url_key == "url":
                        holder.update(width=att.width, height=att.height)
                    if att not in consumed:
                        consumed.append(att)
            out.append(e)
        return out, consumed

    async def new_message(
        self,
        data: Mapping[str, Any],
        files: list[UploadedFile],
        *,
        channel: ChannelRecord,
        author: UserRecord,
        msg_type: int = MT_DEFAULT,
        visible_to: int | None = None,
        extra_flags: int = 0,
        **fields: Any,
    ) -> MessageRecord:
        fake = self.fake
        check_file_sizes((len(f.data) for f in files), fake.upload_limit_in(channel))
        check_message(data, file_count=len(files), creating=True)
        attachments = await self.attachments_from(files, data.get("attachments"), channel.id)
        embeds, consumed = self.resolve_embeds(list(data.get("embeds") or []), attachments)
        msg = MessageRecord(
            id=fake.state.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=str(data.get("content") or ""),
            embeds=embeds,
            attachments=[a for a in attachments if a not in consumed],
            embed_attachments=consumed,
            components=self.assign_component_ids(list(data.get("components") or [])),
            flags=(int(data.get("flags") or 0) & CREATE_FLAGS) | extra_flags,
            type=msg_type,
            visible_to=visible_to,
            mentions=self.mentions(str(data.get("content") or "")),
            **fields,
        )
        fake.state.add_message(msg)
        return msg

    # -- editing -------------------------------------------------------------------------
    async def edit_message(
        self,
        msg: MessageRecord,
        data: Mapping[str, Any],
        files: list[UploadedFile],
        *,
        filling: bool = False,
    ) -> None:
        """Apply an edit with Discord's semantics (attachments list = what to keep)."""
        limit = self.fake.upload_limit_in(self.channel(msg.channel_id))
        check_file_sizes((len(f.data) for f in files), limit)
        check_message(data, file_count=len(files), creating=False)
        new = await self.attachments_from(files, data.get("attachments"), msg.channel_id)
        if "attachments" in data and data["attachments"] is not None:
            keep_ids = set()
            for entry in data["attachments"]:
                with contextlib.suppress(TypeError, ValueError, KeyError):
                    keep_ids.add(int(entry["id"]))
            kept = [a for a in msg.files if a.id in keep_ids]
        else:
            kept = list(msg.files)
        pool = kept + new
        if len(pool) > MAX_ATTACHMENTS:
            raise form_error(
                ["attachments"],
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_ATTACHMENTS} or fewer in length.",
            )
        raw_embeds = list(data["embeds"] or []) if "embeds" in data else msg.embeds
        embeds, consumed = self.resolve_embeds(raw_embeds, pool)
        content = str(data.get("content") or "") if "content" in data else msg.content
        components = (
            self.assign_component_ids(list(data["components"] or []))
            if "components" in data
            else msg.components
        )
        if not (content or embeds or pool or components):
            raise empty_message()
        if not filling:
            msg.edits.append(msg.snapshot())
            msg.edited_at = time.time()
        msg.content = content
        msg.embeds = embeds
        msg.attachments = [a for a in pool if a not in consumed]
        msg.embed_attachments = consumed
        msg.components = components
        if "content" in data:
            msg.mentions = self.mentions(content)
        if data.get("flags") is not None:
            msg.flags = (msg.flags & ~EDITABLE_FLAGS) | (int(data["flags"]) & EDITABLE_FLAGS)
        msg.flags &= ~FLAG_LOADING
