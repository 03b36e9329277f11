"""REST handlers: answering interactions. The callback (`/interactions/{id}/{token}/callback`:
the 3 s deadline, one response, response types that fit the interaction, the
`?with_response=true` body) and the interaction webhook (followups, `@original` and followup
get/edit/delete, 15-minute tokens, a "thinking" defer filled by the first followup; an
interaction only a user install authorized gets at most 5 followups, then 400 40094), plus the
interaction metadata every such message carries. Responses reach places the bot itself cannot
(group DMs, guilds without it): that is how a user-installed app answers there."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from tests.fakes.discord_http import APP, TOKEN, Req, RouteSpec, UploadedFile
from tests.fakes.discord_limits import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    USER_INSTALL_FOLLOWUPS,
    already_acknowledged,
    check_choices,
    check_message,
    check_modal,
    form_error,
    invalid_webhook_token,
    too_many_followups,
    unknown_interaction,
    unknown_message,
    unknown_webhook,
)
from tests.fakes.discord_state import (
    MT_CHAT_INPUT,
    MT_CONTEXT_MENU,
    MT_DEFAULT,
    ChannelRecord,
    InteractionRecord,
    MessageRecord,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord


class InteractionRoutes:
    # interaction type -> response types Discord accepts for it
    ALLOWED_RESPONSES: ClassVar[dict[int, set[int]]] = {
        1: {1},
        2: {4, 5, 9},
        3: {4, 5, 6, 7, 9},
        4: {8},
        5: {4, 5},
    }

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def routes(self) -> list[RouteSpec]:
        return [
            (
                "POST",
                rf"/interactions/(?P<interaction_id>\d+)/{TOKEN}/callback",
                self.callback,
                False,
                "/interactions/{interaction_id}/{interaction_token}/callback",
            ),
            (
                "POST",
                f"/webhooks/{APP}/{TOKEN}",
                self.followup,
                False,
                "/webhooks/{webhook_id}/{webhook_token}",
            ),
            (
                "GET",
                f"/webhooks/{APP}/{TOKEN}/messages/(?P<message_id>@original|\\d+)",
                self.webhook_get,
                False,
                None,
            ),
            (
                "PATCH",
                f"/webhooks/{APP}/{TOKEN}/messages/@original",
                self.webhook_edit,
                False,
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            ),
            (
                "PATCH",
                f"/webhooks/{APP}/{TOKEN}/messages/(?P<message_id>\\d+)",
                self.webhook_edit,
                False,
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
            ),
            (
                "DELETE",
                f"/webhooks/{APP}/{TOKEN}/messages/(?P<message_id>@original|\\d+)",
                self.webhook_delete,
                False,
                None,
            ),
        ]

    # -- the callback --------------------------------------------------------------------
    async def callback(self, req: Req) -> tuple[int, Any]:
        fake = self.fake
        ix = fake.state.interactions.get(int(req.params["interaction_id"]))
        if ix is None or ix.token != req.params["token"]:
            raise unknown_interaction()
        body = req.body
        rtype = body.get("type")
        if ix.acked:
            raise already_acknowledged()
        latency = fake.now() - ix.created
        fake.ack_latencies.append(latency)
        if ix.failed or latency > fake.ack_deadline:
            fake.actions.fail(ix, f"acknowledged after {latency:.2f}s (limit {fake.ack_deadline}s)")
            raise unknown_interaction()
        allowed = set(self.ALLOWED_RESPONSES.get(ix.type, set()))
        if ix.type == 5 and ix.message_id is not None:
            allowed |= {6, 7}
        if rtype not in allowed:
            raise form_error(
                ["type"],
                "INTERACTION_RESPONSE_TYPE_INVALID",
                f"Interaction response type {rtype} is not valid for interaction type {ix.type}",
            )
        data = body.get("data") or {}
        message: MessageRecord | None = None
        channel = fake.builder.channel(ix.channel_id)
        if rtype == 4:
            message = await self.new_interaction_message(ix, data, req.files, channel)
            fake.events.message("MESSAGE_CREATE", message)
        elif rtype == 5:
            ephemeral = bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            message = self.loading_message(ix, channel, ephemeral)
            fake.events.message("MESSAGE_CREATE", message)
        elif rtype in (6, 7):
            message = fake.state.messages.get(ix.message_id or 0)
            if message is None or message.deleted:
                raise unknown_message()
            if rtype == 7:
                await fake.builder.edit_message(message, data, req.files)
                fake.events.message("MESSAGE_UPDATE", message)
                fake._bot_message_event(message)
            ix.original_id = message.id
        elif rtype == 8:
            check_choices(data.get("choices"))
            ix.choices = list(data["choices"])
        elif rtype == 9:
            check_modal(data)
            ix.modal = dict(data)
        ix.response_type = rtype
        ix.ack_latency = latency
        fake._log(f"ACK interaction {ix.name or ix.type} type={rtype} after {latency * 1000:.0f}ms")
        fake._notify()
        if not req.flag("with_response"):
            return 204, None
        info: dict[str, Any] = {"id": str(ix.id), "type": ix.type}
        if message is not None and rtype in (4, 5, 7):
            info.update(
                response_message_id=str(message.id),
                response_message_loading=rtype == 5,
                response_message_ephemeral=message.ephemeral,
            )
        out: dict[str, Any] = {"interaction": info}
        if message is not None and rtype in (4, 5, 7):
            out["resource"] = {"type": rtype, "message": fake.state.message_payload(message)}
        return 200, out

    # -- messages that answer an interaction ---------------------------------------------
    def interaction_fields(
        self, ix: InteractionRecord, *, followup_of: int | None = None
    ) -> dict[str, Any]:
        fake = self.fake
        metadata: dict[str, Any] = {
            "id": str(ix.id),
            "type": ix.type,
            "user": ix.user.payload(),
            "authorizing_integration_owners": dict(
                ix.payload.get("authorizing_integration_owners") or {"0": str(fake.guild_id)}
            ),
        }
        if ix.type in (2, 4):
            metadata["name"] = ix.name
            metadata["command_type"] = int(ix.data.get("type") or 1)
            if ix.data.get("type") in (2, 3) and ix.data.get("target_id"):
                key = "target_message_id" if ix.data.get("type") == 3 else "target_user"
                metadata[key] = ix.data["target_id"]
        if ix.message_id is not None:
            metadata["interacted_message_id"] = str(ix.message_id)
        if ix.parent_id is not None:
            parent = fake.state.interactions.get(ix.parent_id)
            if parent is not None:
                metadata["triggering_interaction_metadata"] = self.interaction_fields(parent)[
                    "interaction_metadata"
                ]
        if followup_of is not None:
            metadata["original_response_message_id"] = str(followup_of)
        legacy = {"id": str(ix.id), "type": ix.type, "name": ix.name, "user": ix.user.payload()}
        return {
            "interaction_metadata": metadata,
            "interaction_legacy": legacy,
            "webhook_id": fake.application_id,
            "application_id": fake.application_id,
            "interaction_id": ix.id,
        }

    @staticmethod
    def message_type_for(ix: InteractionRecord) -> int:
        if ix.type == 2:
            return MT_CHAT_INPUT if int(ix.data.get("type") or 1) == 1 else MT_CONTEXT_MENU
        return MT_DEFAULT

    async def new_interaction_message(
        self,
        ix: InteractionRecord,
        data: Mapping[str, Any],
        files: list[UploadedFile],
        channel: ChannelRecord,
        *,
        followup_of: int | None = None,
    ) -> MessageRecord:
        fake = self.fake
        ephemeral = bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)
        msg = await fake.builder.new_message(
            data,
            files,
            channel=channel,
            author=fake.bot_user,
            msg_type=self.message_type_for(ix),
            visible_to=ix.user.id if ephemeral else None,
            extra_flags=FLAG_EPHEMERAL if ephemeral else 0,
            **self.interaction_fields(ix, followup_of=followup_of),
        )
        if followup_of is None:
            ix.original_id = msg.id
        fake._bot_message_event(msg)
        return msg

    def loading_message(
        self, ix: InteractionRecord, channel: ChannelRecord, ephemeral: bool
    ) -> MessageRecord:
        fake = self.fake
        msg = MessageRecord(
            id=fake.state.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=fake.bot_user,
            flags=FLAG_LOADING | (FLAG_EPHEMERAL if ephemeral else 0),
            type=self.message_type_for(ix),
            visible_to=ix.user.id if ephemeral else None,
            **self.interaction_fields(ix),
        )
        fake.state.add_message(msg)
        ix.original_id = msg.id
        ix.deferred_pending = True
        return msg

    # -- the interaction webhook ---------------------------------------------------------
    def _webhook_interaction(self, req: Req) -> InteractionRecord:
        fake = self.fake
        ix = fake.state.interactions_by_token.get(req.params["token"])
        if int(req.params["app_id"]) != fake.application_id:
            raise unknown_webhook()
        if ix is None:
            raise invalid_webhook_token()
        if fake.now() - ix.created > fake.token_lifetime:
            raise invalid_webhook_token()
        if not ix.acked:
            raise unknown_webhook()
        return ix

    def _webhook_message(self, ix: InteractionRecord, ref: str) -> MessageRecord:
        mid = ix.original_id if ref == "@original" else int(ref)
        if mid is None or (mid != ix.original_id and mid not in ix.followup_ids):
            raise unknown_message()
        msg = self.fake.state.messages.get(mid)
        if msg is None or msg.deleted:
            raise unknown_message()
        return msg

    async def followup(self, req: Req) -> tuple[int, Any]:
        fake = self.fake
        ix = self._webhook_interaction(req)
        data = req.body
        owners = ix.payload.get("authorizing_integration_owners") or {}
        if "0" not in owners and ix.followups_created >= USER_INSTALL_FOLLOWUPS:
            # Discord: user-installed apps may create at most 5 followups per interaction.
            raise too_many_followups()
        ix.followups_created += 1
        if ix.deferred_pending and ix.original_id is not None:
            # The first followup after a "thinking" defer replaces the loading message.
            msg = fake.state.messages[ix.original_id]
            check_message(data, file_count=len(req.files), creating=True)
            await fake.builder.edit_message(msg, data, req.files, filling=True)
            ix.deferred_pending = False
            fake.events.message("MESSAGE_UPDATE", msg)
            fake._bot_message_event(msg)
        else:
            msg = await self.new_interaction_message(
                ix, data, req.files, fake.builder.channel(ix.channel_id), followup_of=ix.original_id
            )
            fake.events.message("MESSAGE_CREATE", msg)
        ix.followup_ids.append(msg.id)
        if not req.flag("wait"):
            return 204, None
        return 200, fake.state.message_payload(msg)

    async def webhook_get(self, req: Req) -> tuple[int, Any]:
        ix = self._webhook_interaction(req)
        msg = self._webhook_message(ix, req.params["message_id"])
        return 200, self.fake.state.message_payload(msg)

    async def webhook_edit(self, req: Req) -> tuple[int, Any]:
        fake = self.fake
        ix = self._webhook_interaction(req)
        msg = self._webhook_message(ix, req.params.get("message_id", "@original"))
        filling = msg.id == ix.original_id and ix.deferred_pending
        await fake.builder.edit_message(msg, req.body, req.files, filling=filling)
        if filling:
            ix.deferred_pending = False
        fake.events.message("MESSAGE_UPDATE", msg)
        fake._bot_message_event(msg)
        return 200, fake.state.message_payload(msg)

    async def webhook_delete(self, req: Req) -> tuple[int, Any]:
        fake = self.fake
        ix = self._webhook_interaction(req)
        msg = self._webhook_message(ix, req.params["message_id"])
        msg.deleted = True
        if msg.id == ix.original_id:
            ix.original_deleted = True
            ix.deferred_pending = False
        fake.events.delete(msg)
        fake._bot_message_event(msg)
        return 204, None
