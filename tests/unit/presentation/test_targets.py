"""Tests for bot.presentation.targets fallbacks: an expired interaction token, a deleted
progress message, a resumed private job. Small recording doubles stand in for Discord; the
errors are built the way discord.py builds them (HTTPException(response, json_body))."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord
import pytest

from bot.presentation import targets
from bot.presentation.targets import ChannelTarget, InteractionTarget, ResumedTarget

T0 = 1_800_000_000.0
LATE = T0 + 15 * 60  # Discord's token lifetime is over
CHANNEL = 20
USER = 7
PROGRESS = 100  # the interaction's original response
IMAGE = b"\x89PNG result bytes"


# -- discord.py-shaped errors -----------------------------------------------------------------


@dataclass
class Response:
    """What HTTPException reads of an aiohttp.ClientResponse."""

    status: int
    reason: str


def http_error(
    cls: type[discord.HTTPException], status: int, reason: str, code: int, message: str
) -> discord.HTTPException:
    return cls(Response(status, reason), {"code": code, "message": message})  # type: ignore[arg-type]


def invalid_webhook_token() -> discord.HTTPException:
    return http_error(discord.HTTPException, 401, "Unauthorized", 50027, "Invalid Webhook Token")


def unknown_message() -> discord.HTTPException:
    return http_error(discord.NotFound, 404, "Not Found", 10008, "Unknown Message")


def test_errors_are_built_as_discord_py_builds_them() -> None:
    exc = invalid_webhook_token()
    assert (exc.status, exc.code, exc.text) == (401, 50027, "Invalid Webhook Token")
    assert str(exc) == "401 Unauthorized (error code: 50027): Invalid Webhook Token"
    assert targets.token_gone(exc)
    assert not targets.token_gone(unknown_message())


# -- recording doubles ------------------------------------------------------------------------


@dataclass
class Message:
    id: int


@dataclass
class Sent:
    kwargs: dict[str, Any]
    files: list[bytes]  # what each file would upload at the time of the call


def consume(kwargs: dict[str, Any]) -> list[bytes]:
    """Read the files as an upload does (leaving them at their end)."""
    files = list(kwargs.get("files") or []) + [
        f for f in kwargs.get("attachments") or [] if isinstance(f, discord.File)
    ]
    return [f.fp.read() for f in files]


class Channel:
    def __init__(self, channel_id: int = CHANNEL) -> None:
        self.id = channel_id
        self.sent: list[Sent] = []
        self.edits: list[tuple[int, Sent]] = []
        self.deleted: list[int] = []
        self.edit_error: discord.HTTPException | None = None
        self._next = 1000

    async def send(self, **kwargs: Any) -> Message:
        self.sent.append(Sent(kwargs, consume(kwargs)))
        self._next += 1
        return Message(self._next)

    def get_partial_message(self, message_id: int) -> PartialMessage:
        return PartialMessage(self, message_id)


@dataclass
class PartialMessage:
    channel: Channel
    id: int

    async def edit(self, **kwargs: Any) -> Message:
        self.channel.edits.append((self.id, Sent(kwargs, consume(kwargs))))
        if self.channel.edit_error is not None:
            raise self.channel.edit_error
        return Message(self.id)

    async def delete(self) -> None:
        self.channel.deleted.append(self.id)


class User:
    def __init__(self, user_id: int) -> None:
        self.id = user_id
        self.dms: list[Sent] = []

    async def send(self, **kwargs: Any) -> Message:
        self.dms.append(Sent(kwargs, consume(kwargs)))
        return Message(5000 + len(self.dms))


class Client:
    """get_/fetch_ channel and user; `cached=False` makes the get_ lookups miss."""

    def __init__(self, *, cached: bool = True) -> None:
        self.channel = Channel()
        self.user = User(USER)
        self.cached = cached
        self.fetched: list[str] = []

    def get_channel(self, channel_id: int) -> Channel | None:
        return self.channel if self.cached and channel_id == CHANNEL else None

    async def fetch_channel(self, channel_id: int) -> Channel:
        assert channel_id == CHANNEL
        self.fetched.append("channel")
        return self.channel

    def get_user(self, user_id: int) -> User | None:
        return self.user if self.cached and user_id == USER else None

    async def fetch_user(self, user_id: int) -> User:
        assert user_id == USER
        self.fetched.append("user")
        return self.user


@dataclass
class Interaction:
    client: Client
    channel_id: int = CHANNEL
    user: Any = field(default_factory=lambda: User(USER))
    created_at: datetime = field(default_factory=lambda: datetime.fromtimestamp(T0, UTC))
    application_id: int = 999
    token: str = "interaction-token"
    error: discord.HTTPException | None = None
    edits: list[Sent] = field(default_factory=list)

    async def edit_original_response(self, **kwargs: Any) -> Message:
        self.edits.append(Sent(kwargs, consume(kwargs)))
        if self.error is not None:
            raise self.error
        return Message(PROGRESS)


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = T0 + 1
        monkeypatch.setattr(targets.time, "time", lambda: self.now)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def result_file() -> discord.File:
    return discord.File(io.BytesIO(IMAGE), filename="result.png")


async def interaction_target(
    client: Client, *, private: bool = False
) -> tuple[InteractionTarget, Interaction]:
    """A target whose progress is already showing in the original response."""
    interaction = Interaction(client)
    target = InteractionTarget(interaction, private=private)  # type: ignore[arg-type]
    await target.show("Generating…")
    assert target.message_id == PROGRESS
    return target, interaction


# -- InteractionTarget ------------------------------------------------------------------------


async def test_interaction_finish_in_time_edits_the_original_response(clock: Clock) -> None:
    client = Client()
    target, interaction = await interaction_target(client)
    message = await target.finish(content="Done", files=[result_file()])
    assert message == Message(PROGRESS)
    assert interaction.edits[-1].files == [IMAGE]
    assert client.channel.sent == [] and client.channel.deleted == []


async def test_expired_token_posts_a_channel_message_mentioning_the_requester(
    clock: Clock,
) -> None:
    client = Client()
    target, interaction = await interaction_target(client)
    clock.now = LATE
    embed = discord.Embed(title="A fox")
    message = await target.finish(content="Done", embed=embed, files=[result_file()])
    assert len(interaction.edits) == 1  # the stale token was not even tried
    [sent] = client.channel.sent
    assert sent.kwargs["content"] == f"<@{USER}> your request is done. Done"
    assert sent.kwargs["embed"] is embed and sent.files == [IMAGE]
    assert message is not None and target.message_id == message.id != PROGRESS


async def test_expired_token_deletes_the_stale_progress_message(clock: Clock) -> None:
    client = Client()
    target, _ = await interaction_target(client)
    clock.now = LATE
    await target.finish(content=None, files=[result_file()])
    assert client.channel.sent[0].kwargs["content"] == f"<@{USER}> your request is done."
    assert client.channel.deleted == [PROGRESS]  # "Generating…" does not stay forever


@pytest.mark.parametrize(
    "error",
    [
        invalid_webhook_token(),
        http_error(discord.NotFound, 404, "Not Found", 10015, "Unknown Webhook"),
        http_error(discord.NotFound, 404, "Not Found", 10062, "Unknown interaction"),
        # a body that is not JSON: discord.py passes the text, and the code is 0
        discord.HTTPException(Response(401, "Unauthorized"), "401: Unauthorized"),  # type: ignore[arg-type]
    ],
    ids=["401-50027", "404-10015", "404-10062", "401-text"],
)
async def test_token_refused_by_discord_posts_in_the_channel_with_files_rewound(
    clock: Clock, error: discord.HTTPException
) -> None:
    client = Client(cached=False)
    target, interaction = await interaction_target(client)
    interaction.error = error  # the clock says valid, Discord says no
    message = await target.finish(content="Done", files=[result_file()])
    assert interaction.edits[-1].files == [IMAGE]  # the failed edit read the file
    [sent] = client.channel.sent
    assert sent.files == [IMAGE]  # rewound: the new message carries the whole image
    assert sent.kwargs["content"].startswith(f"<@{USER}> ")
    assert client.channel.deleted == [PROGRESS]
    assert message is not None and target.message_id == message.id
    assert "channel" in client.fetched


async def test_other_http_errors_on_finish_are_raised(clock: Clock) -> None:
    client = Client()
    target, interaction = await interaction_target(client)
    interaction.error = http_error(
        discord.HTTPException, 400, "Bad Request", 50035, "Invalid Form Body"
    )
    with pytest.raises(discord.HTTPException, match="50035"):
        await target.finish(content="Done")
    assert client.channel.sent == []


async def test_progress_after_a_refused_token_edits_the_public_message_in_the_channel(
    clock: Clock,
) -> None:
    client = Client()
    target, interaction = await interaction_target(client)
    interaction.error = invalid_webhook_token()
    await target.show("Generating… 20 s")
    await target.show("Generating… 25 s")
    assert len(interaction.edits) == 2  # tried once, then the token is known to be gone
    assert [(mid, e.kwargs["content"]) for mid, e in client.channel.edits] == [
        (PROGRESS, "Generating… 20 s"),
        (PROGRESS, "Generating… 25 s"),
    ]


@pytest.mark.parametrize("cached", [True, False])
async def test_private_result_after_expiry_goes_to_the_requesters_dms(
    clock: Clock, cached: bool
) -> None:
    client = Client(cached=cached)
    target, interaction = await interaction_target(client, private=True)
    clock.now = LATE
    message = await target.finish(content="Done", files=[result_file()])
    [dm] = client.user.dms
    assert dm.kwargs["content"] == "Done" and dm.files == [IMAGE]
    assert message == Message(5001)
    assert client.channel.sent == [] and client.channel.deleted == []
    assert len(interaction.edits) == 1
    assert ("user" in client.fetched) is not cached


async def test_private_result_refused_token_goes_to_dms_with_files_rewound(
    clock: Clock,
) -> None:
    client = Client()
    target, interaction = await interaction_target(client, private=True)
    interaction.error = invalid_webhook_token()
    await target.finish(content="Done", files=[result_file()])
    assert [dm.files for dm in client.user.dms] == [[IMAGE]]
    assert client.channel.sent == []


async def test_private_progress_after_expiry_is_not_shown_anywhere(clock: Clock) -> None:
    client = Client()
    target, interaction = await interaction_target(client, private=True)
    clock.now = LATE
    await target.show("Generating… 900 s")
    assert len(interaction.edits) == 1
    assert client.channel.edits == [] and client.user.dms == []


# -- ChannelTarget ----------------------------------------------------------------------------


async def test_channel_finish_edits_its_progress_message(clock: Clock) -> None:
    client = Client()
    target = ChannelTarget(client, channel_id=CHANNEL, user_id=USER, message_id=300)
    message = await target.finish(content="Done", files=[result_file()])
    assert message == Message(300)
    assert [(mid, e.files) for mid, e in client.channel.edits] == [(300, [IMAGE])]
    assert client.channel.sent == []


async def test_channel_finish_after_its_progress_was_deleted_posts_anew_with_files_rewound(
    clock: Clock,
) -> None:
    client = Client()
    target = ChannelTarget(client, channel_id=CHANNEL, user_id=USER, reply_to=55, message_id=300)
    client.channel.edit_error = unknown_message()
    message = await target.finish(content="Done", files=[result_file()])
    assert client.channel.edits[0][1].files == [IMAGE]  # the failed edit read the file
    [sent] = client.channel.sent
    assert sent.files == [IMAGE] and sent.kwargs["content"] == "Done"
    reference = sent.kwargs["reference"]
    assert (reference.message_id, reference.fail_if_not_exists) == (55, False)
    assert sent.kwargs["mention_author"] is False
    assert message is not None and target.message_id == message.id != 300


async def test_channel_finish_other_errors_are_raised(clock: Clock) -> None:
    client = Client()
    target = ChannelTarget(client, channel_id=CHANNEL, user_id=USER, message_id=300)
    client.channel.edit_error = http_error(
        discord.Forbidden, 403, "Forbidden", 50001, "Missing Access"
    )
    with pytest.raises(discord.Forbidden):
        await target.finish(content="Done")
    assert client.channel.sent == []


# -- ResumedTarget ----------------------------------------------------------------------------


@dataclass
class Webhook:
    application_id: int
    token: str
    client: Any
    error: discord.HTTPException | None = None
    edits: list[tuple[int, Sent]] = field(default_factory=list)

    async def edit_message(self, message_id: int, **kwargs: Any) -> Message:
        self.edits.append((message_id, Sent(kwargs, consume(kwargs))))
        if self.error is not None:
            raise self.error
        return Message(message_id)


class Webhooks:
    """Replaces discord.Webhook.partial; records every webhook made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[Webhook] = []
        self.error: discord.HTTPException | None = None
        monkeypatch.setattr(discord.Webhook, "partial", self.partial)

    def partial(self, application_id: int, token: str, *, client: Any) -> Webhook:
        self.made.append(Webhook(application_id, token, client, self.error))
        return self.made[-1]


@pytest.fixture
def webhooks(monkeypatch: pytest.MonkeyPatch) -> Webhooks:
    return Webhooks(monkeypatch)


def private_info(**extra: Any) -> dict[str, Any]:
    info = {
        "channel_id": CHANNEL, "message_id": PROGRESS, "private": True,
        "application_id": 999, "token": "interaction-token", "issued_at": T0,
    }  # fmt: skip
    return {**info, **extra}


async def test_resumed_private_with_a_live_token_edits_through_the_webhook(
    clock: Clock, webhooks: Webhooks
) -> None:
    client = Client()
    target = ResumedTarget(client, private_info(), user_id=USER)
    message = await target.finish(content="Done", files=[result_file()])
    [hook] = webhooks.made
    assert (hook.application_id, hook.token, hook.client) == (999, "interaction-token", client)
    [(message_id, edit)] = hook.edits
    assert message_id == PROGRESS and edit.kwargs["content"] == "Done" and edit.files == [IMAGE]
    assert message == Message(PROGRESS)
    assert client.user.dms == [] and client.channel.sent == []


async def test_resumed_private_with_an_expired_token_goes_to_dms(
    clock: Clock, webhooks: Webhooks
) -> None:
    client = Client(cached=False)
    target = ResumedTarget(client, private_info(), user_id=USER)
    clock.now = LATE
    await target.finish(content="Done", files=[result_file()])
    assert webhooks.made == []
    assert [(dm.kwargs["content"], dm.files) for dm in client.user.dms] == [("Done", [IMAGE])]
    assert client.channel.sent == [] and client.channel.edits == []


async def test_resumed_private_token_refused_goes_to_dms_with_files_rewound(
    clock: Clock, webhooks: Webhooks
) -> None:
    client = Client()
    webhooks.error = invalid_webhook_token()
    target = ResumedTarget(client, private_info(), user_id=USER)
    await target.finish(content="Done", files=[result_file()])
    assert webhooks.made[0].edits[0][1].files == [IMAGE]
    assert [dm.files for dm in client.user.dms] == [[IMAGE]]
    assert "token" not in target.resume_info()  # a refused token is not handed on


async def test_resumed_private_without_a_token_goes_to_dms(
    clock: Clock, webhooks: Webhooks
) -> None:
    client = Client()
    info = private_info()
    del info["token"]
    target = ResumedTarget(client, info, user_id=USER)
    await target.finish(content="Done")
    assert webhooks.made == [] and [dm.kwargs["content"] for dm in client.user.dms] == ["Done"]


async def test_resumed_public_edits_its_channel_message(clock: Clock, webhooks: Webhooks) -> None:
    client = Client()
    info = {"channel_id": CHANNEL, "message_id": 300, "private": False}
    target = ResumedTarget(client, info, user_id=USER)
    await target.finish(content="Done", files=[result_file()])
    assert webhooks.made == []
    assert [(mid, e.files) for mid, e in client.channel.edits] == [(300, [IMAGE])]
