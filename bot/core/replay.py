"""A stored generation made into a new submission: reroll, retry, restart recovery."""

from __future__ import annotations

from bot.adapters.prompts import Defaults, SpecError, compile_request, prepare
from bot.adapters.store import GenerationRow, Store
from bot.core.history import build_history
from bot.core.submission import Requester, Submission, load_inputs, split_stored_spec
from bot.errors import UserError


async def replay_submission(
    store: Store,
    gen: GenerationRow,
    requester: Requester,
    *,
    kind: str,
    private: bool,
    history_window: int,
) -> Submission:
    """The same spec, the same stored input images and (in a chain) the same parent."""
    spec, resolved = split_stored_spec(gen.spec)
    inputs = await load_inputs(store, resolved)
    if inputs is None:
        raise UserError(
            "An image this request used is no longer stored (past retention or deleted)."
        )
    try:
        prepared = prepare(spec, None, Defaults(model=gen.model, size=gen.size, aspect=gen.aspect))
    except SpecError as exc:
        raise UserError(str(exc)) from None
    history = []
    if gen.chain_id is not None and gen.parent_id is not None:
        # The step itself counts against the request budget, as when it was first sent.
        current = compile_request(prepared, [item.image for item in inputs]).user_content()
        history = await build_history(
            store, gen.parent_id, window=history_window, current=current
        )
    return Submission.build(
        requester,
        kind=kind,
        prepared=prepared,
        inputs=inputs,
        history=history,
        chain_id=gen.chain_id,
        parent_id=gen.parent_id,
        private=private,
    )
