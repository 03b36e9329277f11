"""Chains: iterative editing of one result, step by step, in a thread.

Where the bot can open threads, a chain gets one: a public thread on the refined result's
message, or, for a result in a private thread (threads do not nest), a new private thread
beside it in the same channel with the people refining in it, so the chain stays private.
In a DM with the bot the conversation itself is the chain (no threads exist there); where the
bot answers only through interactions (group DMs and other servers through the app installed
to the user's account) a chain goes on through the Refine button and the Edit image menu, in
the interactions' own messages.

A chain is a tree of generations (each step has a parent); its head is the image the next
plain message edits. Steps of one chain run strictly one after another in arrival order: a
caller takes its turn (`Chains.turn`) as soon as it knows the chain, before any slow work,
and holds it until its step has finished, so two quick messages never race from the same
head. Different chains run in parallel.

Each step is sent as a multi-turn request: a bounded window of earlier turns in which the
model's stored content goes back unchanged (Gemini 3 verifies its thought signatures).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import discord

from bot.adapters.prompts import (
    Defaults,
    InputRef,
    RequestOptions,
    SpecError,
    compile_request,
    prepare,
)
from bot.adapters.store import ChainRow, GenerationRow, Store
from bot.config import Settings
from bot.core.history import CHAIN_REF, build_history
from bot.core.lanes import SerialLanes, Ticket
from bot.core.preferences import preferences_for
from bot.core.quotas import precheck
from bot.core.resolver import RequestResolver, Upload, anchor_mentions
from bot.core.submission import InputImage, Requester, Submission, uses_anchors
from bot.errors import UserError
from bot.presentation.targets import DiscordClient, Target
from bot.services.generation import Generator

log = logging.getLogger(__name__)

THREAD_NAME_LIMIT = 100

RETENTION_MESSAGE = (
    "This image is past the {days}-day retention period and no longer stored, so it can't be "
    "refined. Start again with /edit (attach the image) or /imagine."
)
NOTICE_NO_PERMISSION = (
    "I can't create threads in this channel, so this chain continues as replies here."
)
NOTICE_IN_THREAD = "This is already a thread, so this chain continues as replies here."
NOTICE_NO_THREADS = "Threads aren't available here, so this chain continues as replies."
NOTICE_NO_PRIVATE_THREAD = (
    "I can't open a private thread for this chain here (I need the Create Private Threads and "
    "Send Messages in Threads permissions), so it continues as replies in this thread."
)
NOTICE_PRIVATE_THREAD = "✏️ This chain continues in the private thread <#{thread_id}>."


# ------------------------------------------------------------------------------ chains


@dataclass
class StepRequest:
    user_id: int
    guild_id: int | None
    changes: str
    uploads: list[Upload]
    parent_id: int | None  # None: edit the chain's head


@dataclass(frozen=True)
class Placement:
    """Where a chain's steps go: its thread, or (None) in place as replies; and what to tell
    the people in the channel the first time threads turn out to be impossible."""

    thread_id: int | None
    notice: str | None = None


class Chains:
    """Chain bookkeeping, thread placement and the per-chain step pipeline."""

    def __init__(
        self, *, store: Store, settings: Settings, generator: Generator, client: DiscordClient
    ) -> None:
        self.store = store
        self.settings = settings
        self.generator = generator
        self.client = client
        self._lanes = SerialLanes()
        self._in_place: set[int] = set()  # chains that continue as replies (no retries)

    # -- ordering -------------------------------------------------------------------------

    def arrival(self, channel_id: int) -> Ticket:
        """A turn in a channel: hold it while finding the chain and taking its turn, so
        messages keep the order they arrived in."""
        return self._lanes.take(f"channel:{channel_id}")

    def turn(self, chain_id: int) -> Ticket:
        """A turn in the chain's lane: hold it for the whole step (or Undo)."""
        return self._lanes.take(f"chain:{chain_id}")

    # -- chains ---------------------------------------------------------------------------

    async def chain_for(self, gen: GenerationRow) -> ChainRow:
        """The chain a result belongs to, creating it (the result is step 0) if needed."""
        store = self.store
        chain = await store.chain_for_generation(gen.id)
        if chain is not None:
            return chain
        try:
            chain_id = await store.create_chain(
                root_generation_id=gen.id,
                guild_id=gen.guild_id,
                channel_id=gen.channel_id,
                thread_id=None,
                owner_id=gen.user_id,
            )
        except ValueError:  # someone else started it a moment ago
            chain = await store.chain_for_generation(gen.id)
            if chain is None:
                raise
            return chain
        created = await store.get_chain(chain_id)
        assert created is not None
        return created

    async def place(
        self,
        chain: ChainRow,
        *,
        user_id: int,
        result_channel_id: int | None = None,
        result_message_id: int | None = None,
        threads_here: bool = True,
    ) -> Placement:
        """The chain's thread, created lazily on the refined result's message (named from
        the request's subject); for a result in a private thread, a private thread beside it.
        Where that is impossible (no permission, already a thread, a forum...) the chain
        continues as replies and the notice says so, once. `threads_here` False (the bot's
        DM, places it reaches only through interactions): in place, nothing to explain."""
        if not threads_here:
            return Placement(None)
        async with self._lanes.take(f"thread:{chain.id}"):
            store = self.store
            fresh = await store.get_chain(chain.id)
            assert fresh is not None
            thread_gone = False
            if fresh.thread_id is not None:
                if await self._thread_alive(fresh.thread_id):
                    return Placement(fresh.thread_id)
                await store.set_chain_thread(fresh.id, None)
                thread_gone = True
            if fresh.id in self._in_place:
                return Placement(None)
            if not thread_gone and len(await store.chain_steps(fresh.id)) > 1:
                # Earlier steps went in place (before a restart): stay consistent.
                self._in_place.add(fresh.id)
                return Placement(None)
            prefs = await preferences_for(store, self.settings, user_id, fresh.guild_id)
            if not prefs.threads:
                return Placement(None)  # the user's own choice: nothing to explain
            root = await store.get_generation(fresh.root_generation_id)
            channel_id = result_channel_id or (root.channel_id if root else fresh.channel_id)
            message_id = result_message_id or (root.message_id if root else None)
            name = _thread_name(root.summary if root else "", fresh.id)
            channel = self.client.get_channel(channel_id)
            if _is_private_thread(channel):
                assert isinstance(channel, discord.Thread)
                members = {user_id, *([root.user_id] if root else [])}
                thread_id, notice = await self._open_private_thread(
                    fresh, channel, name, members
                )
                if thread_id is not None:
                    return Placement(thread_id, notice)
                self._in_place.add(fresh.id)
                return Placement(None, notice)
            notice = _thread_problem(channel) if message_id is not None else NOTICE_NO_THREADS
            if notice is None and message_id is not None:
                assert isinstance(channel, discord.TextChannel)  # _thread_problem checked
                thread_id, notice = await self._create_thread(fresh, channel, message_id, name)
                if thread_id is not None:
                    return Placement(thread_id)
            self._in_place.add(fresh.id)
            return Placement(None, notice)

    async def _open_private_thread(
        self, chain: ChainRow, inside: discord.Thread, name: str, members: set[int]
    ) -> tuple[int | None, str | None]:
        """A private thread for a chain whose result is in a private thread: beside it, in
        the same channel, with the people refining (they may invite others). The permissions
        are checked first; a refusal keeps the chain as replies, said once."""
        parent = inside.parent
        if not isinstance(parent, discord.TextChannel):
            return None, NOTICE_IN_THREAD
        me = parent.guild.me
        if me is not None:
            perms = parent.permissions_for(me)
            if not (perms.create_private_threads and perms.send_messages_in_threads):
                return None, NOTICE_NO_PRIVATE_THREAD
        try:
            thread = await parent.create_thread(
                name=name,
                type=discord.ChannelType.private_thread,
                invitable=True,
                auto_archive_duration=1440,
            )
        except discord.HTTPException as exc:
            log.info("no private thread for chain %s: %s", chain.id, exc)
            forbidden = isinstance(exc, discord.Forbidden)
            return None, NOTICE_NO_PRIVATE_THREAD if forbidden else NOTICE_IN_THREAD
        for member in sorted(members):
            try:
                await thread.add_user(discord.Object(id=member))
            except discord.HTTPException as exc:
                log.info("could not add %s to chain thread %s: %s", member, thread.id, exc)
        await self.store.set_chain_thread(chain.id, thread.id)
        log.info("chain %s lives in private thread %s", chain.id, thread.id)
        return thread.id, NOTICE_PRIVATE_THREAD.format(thread_id=thread.id)

    async def _create_thread(
        self, chain: ChainRow, channel: discord.TextChannel, message_id: int, name: str
    ) -> tuple[int | None, str | None]:
        try:
            thread = await channel.get_partial_message(message_id).create_thread(
                name=name,
                auto_archive_duration=1440,  # a day of quiet, then archived
            )
            thread_id = thread.id
        except discord.HTTPException as exc:
            if exc.code != 160004:  # not "a thread already exists on this message"
                log.info("no thread for chain %s: %s", chain.id, exc)
                return None, (
                    NOTICE_NO_PERMISSION
                    if isinstance(exc, discord.Forbidden)
                    else NOTICE_NO_THREADS
                )
            thread_id = message_id  # a message's thread has the message's id
            other = await self.store.chain_by_thread(thread_id)
            if other is not None and other.id != chain.id:
                return None, NOTICE_NO_THREADS
        await self.store.set_chain_thread(chain.id, thread_id)
        log.info("chain %s lives in thread %s", chain.id, thread_id)
        return thread_id, None

    async def _thread_alive(self, thread_id: int) -> bool:
        if self.client.get_channel(thread_id) is not None:
            return True
        try:
            await self.client.fetch_channel(thread_id)  # archived threads are not cached
        except (discord.NotFound, discord.Forbidden):
            return False
        except discord.HTTPException:
            return True  # a hiccup is no reason to abandon the thread
        return True

    # -- steps ----------------------------------------------------------------------------

    async def run_step(
        self, chain_id: int, request: StepRequest, target: Target, *, private: bool = False
    ) -> int:
        """Queue one step and wait until it has finished; returns its generation id. The
        caller holds the chain's turn."""
        store = self.store
        await self._settle(chain_id)
        chain = await store.get_chain(chain_id)
        if chain is None:
            raise UserError("This chain no longer exists.")
        parent_id = request.parent_id or chain.head_generation_id
        parent = await store.get_generation(parent_id)
        if parent is None or parent.status != "done" or parent.output_image is None:
            raise UserError("There is no finished image to refine here yet.")
        if parent.chain_id != chain.id:
            raise UserError("That image belongs to another chain; reply to it directly.")
        if not await store.has_image(parent.output_image):
            raise UserError(RETENTION_MESSAGE.format(days=self.settings.image_retention_days))
        sub = await self.step_submission(
            chain, parent, request, channel_id=target.channel_id, private=private
        )
        gen_id = await self.generator.submit(sub, target)
        await self.generator.wait_for(gen_id)
        return gen_id

    async def _settle(self, chain_id: int) -> None:
        """Wait for steps of this chain still running (resumed after a restart)."""
        generator = self.generator
        for gen in await self.store.unfinished_generations():
            if gen.chain_id == chain_id:
                await generator.wait_for(gen.id)

    async def refuse_others_anchors(self, parent: GenerationRow, user_id: int) -> None:
        """The history window re-sends earlier steps' inputs; if one of them is somebody
        else's anchor (a face, say), only that person may continue from here."""
        window = max(1, self.settings.chain_history_steps)
        for step in await self.store.chain_lineage(parent.id, limit=window):
            if step.user_id != user_id and uses_anchors(step.spec):
                raise UserError(
                    "This chain uses someone else's private anchors, so only they can continue "
                    "it. Start your own edit with the Edit image menu or /edit."
                )

    async def step_submission(
        self,
        chain: ChainRow,
        parent: GenerationRow,
        request: StepRequest,
        *,
        channel_id: int,
        private: bool,
    ) -> Submission:
        """The edit_image spec for one step (task, chain_id, changes, inputs chain:latest
        plus the new attachments and any anchors named), resolved, quota-checked, with its
        history."""
        inputs = [InputRef(type="image", data=CHAIN_REF, role="edit_target")]
        inputs += [
            InputRef(type="image", data=f"attachment:{i}", role="reference")
            for i in range(1, len(request.uploads) + 1)
        ]
        # "anchor:NAME" in the text adds the caller's anchor after the other images; the
        # name leaves the (public) text.
        changes, anchors = anchor_mentions(request.changes, first_image=len(inputs) + 1)
        raw = {"task": "edit_image", "chain_id": str(chain.id), "changes": changes}
        try:
            prepared = prepare(
                raw,
                RequestOptions(inputs=inputs, anchors=anchors),
                Defaults(model=parent.model, size=parent.size, aspect=parent.aspect),
            )
        except SpecError as exc:
            raise UserError(f"That change has a problem:\n{exc}") from None
        resolver = RequestResolver(
            self.store,
            user_id=request.user_id,
            uploads=request.uploads,
            chain_image=(parent.output_image or "", parent.step),
        )
        try:
            resolved: list[InputImage] = await resolver.resolve_all(prepared.spec, model=prepared.model)
        except SpecError as exc:
            raise UserError(str(exc)) from None
        await precheck(
            self.store,
            self.settings,
            user_id=request.user_id,
            guild_id=request.guild_id,
            prepared=[prepared],
        )
        await self.refuse_others_anchors(parent, request.user_id)
        current = compile_request(prepared, [item.image for item in resolved]).user_content()
        history = await build_history(
            self.store, parent.id, window=self.settings.chain_history_steps, current=current
        )
        return Submission.build(
            Requester(request.user_id, request.guild_id, channel_id),
            kind="refine",
            prepared=prepared,
            inputs=resolved,
            history=history,
            chain_id=chain.id,
            parent_id=parent.id,
            private=private,
        )

    async def undo(self, chain_id: int) -> GenerationRow:
        """Move the head back one step; returns the new head. The caller holds the turn."""
        store = self.store
        chain = await store.get_chain(chain_id)
        head = await store.get_generation(chain.head_generation_id) if chain else None
        if chain is None or head is None or head.parent_id is None:
            raise UserError("Nothing to undo: this is the first image of the chain.")
        parent = await store.get_generation(head.parent_id)
        if parent is None:
            raise UserError("Nothing to undo: the previous step is gone.")
        await store.set_chain_head(chain.id, parent.id)
        return parent


def _thread_name(summary: str, chain_id: int) -> str:
    name = " ".join((summary or "").split())
    if name.lower().startswith("edit: "):
        name = name[6:]
    name = name or f"Chain {chain_id}"
    return name if len(name) <= THREAD_NAME_LIMIT else name[: THREAD_NAME_LIMIT - 1] + "…"


def _is_private_thread(channel: object) -> bool:
    return (
        isinstance(channel, discord.Thread) and channel.type is discord.ChannelType.private_thread
    )


def _thread_problem(channel: object) -> str | None:
    """Why a thread cannot be made on a message in this channel (None: it can)."""
    if isinstance(channel, discord.Thread):
        return NOTICE_IN_THREAD
    if not isinstance(channel, discord.TextChannel):
        return NOTICE_NO_THREADS  # forums, voice chats, unknown channels
    me = channel.guild.me
    if me is None:
        return None  # cannot tell: try, and learn from Discord's answer
    perms = channel.permissions_for(me)
    if not (perms.create_public_threads and perms.send_messages_in_threads):
        return NOTICE_NO_PERMISSION
    return None
