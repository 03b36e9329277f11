"""/describe and the Describe as JSON menu: an image in, a spec out, recorded and charged.

The image is stored (its sha goes on the record as the input image, so "Generate with this
image" still finds it after a restart); the call is checked against the quotas first (at the
text model's typical cost), recorded as a finished generation of kind "describe" with its
tokens and cost, and only a successful one is charged (record_usage, no images).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.adapters.describe import DEFAULT_DETAIL, DETAIL_LEVELS, Description, describe_image
from bot.adapters.gemini import Failure, FailureKind, GeminiClient
from bot.adapters.imaging import image_size
from bot.adapters.prompts import Defaults
from bot.adapters.store import GenerationRow, Store
from bot.config import Settings, estimate_text_cost
from bot.core.quotas import check_budget
from bot.core.resolver import Upload
from bot.core.submission import Requester

log = logging.getLogger(__name__)

BLOCKED = frozenset({FailureKind.PROMPT_BLOCKED, FailureKind.OUTPUT_BLOCKED})


@dataclass
class Described:
    generation_id: int
    description: Description
    image_sha: str


@dataclass
class DescribeFailed:
    generation_id: int
    failure: Failure

    @property
    def blocked(self) -> bool:
        return self.failure.kind in BLOCKED


class DescribeService:
    def __init__(self, *, store: Store, settings: Settings, gemini: GeminiClient) -> None:
        self.store = store
        self.settings = settings
        self.gemini = gemini

    @property
    def model(self) -> str:
        return self.settings.describe_model

    async def precheck(self, requester: Requester) -> None:
        """QuotaExceeded if one more describe would pass the user's or server's budget."""
        await check_budget(
            self.store,
            self.settings,
            user_id=requester.user_id,
            guild_id=requester.guild_id,
            images=0,
            cost=estimate_text_cost(self.model),
        )

    async def describe(
        self,
        requester: Requester,
        upload: Upload,
        *,
        detail: str | None,
        defaults: Defaults,
        private: bool,
    ) -> Described | DescribeFailed:
        """Store the image, ask the text model, record the call (and charge it if it worked)."""
        image = upload.image
        sha = await self.store.put_image(image.data, image.mime_type)
        return await self.describe_stored(
            requester,
            sha,
            image.data,
            image.mime_type,
            (image.width, image.height),
            detail=detail,
            defaults=defaults,
            private=private,
            label=upload.filename,
        )

    async def describe_stored(
        self,
        requester: Requester,
        sha: str,
        data: bytes,
        mime_type: str,
        size: tuple[int, int],
        *,
        detail: str | None,
        defaults: Defaults,
        private: bool,
        label: str,
    ) -> Described | DescribeFailed:
        detail = detail if detail in DETAIL_LEVELS else DEFAULT_DETAIL
        result = await describe_image(
            self.gemini,
            model=self.model,
            image=data,
            mime_type=mime_type,
            width=size[0],
            height=size[1],
            detail=detail,
            defaults=defaults,
            seconds=self.settings.describe_timeout_seconds,
        )
        if isinstance(result, Failure):
            gid = await self.store.record_generation(
                user_id=requester.user_id,
                guild_id=requester.guild_id,
                channel_id=requester.channel_id,
                kind="describe",
                spec={"task": "describe", "detail": detail},
                model=self.model,
                size="-",
                aspect="-",
                summary=f"Describe {label}"[:200],
                status="blocked" if result.kind in BLOCKED else "failed",
                input_images=[sha],
                error_kind=str(result.kind),
                error=result.message,
                seconds=result.latency,
                private=private,
            )
            log.info(
                "describe %s failed for user %s: %s (%s)",
                gid,
                requester.user_id,
                result.kind,
                result.detail,
            )
            return DescribeFailed(gid, result)
        prepared = result.prepared
        gid = await self.store.record_generation(
            user_id=requester.user_id,
            guild_id=requester.guild_id,
            channel_id=requester.channel_id,
            kind="describe",
            spec=result.spec,
            model=result.model,
            size=prepared.size,
            aspect=prepared.aspect,
            summary=("Describe: " + result.summary.splitlines()[0])[:200],
            input_images=[sha],
            model_text=result.text,
            prompt_tokens=result.usage.prompt_tokens,
            output_tokens=result.usage.output_tokens,
            thoughts_tokens=result.usage.thoughts_tokens,
            cost=result.cost,
            model_version=result.model_version,
            seconds=result.latency,
            private=private,
            warnings=[f"first answer corrected: {p}" for p in result.first_problems[:3]],
        )
        await self.store.record_usage(
            user_id=requester.user_id,
            guild_id=requester.guild_id,
            model=result.model,
            images=0,
            cost=result.cost,
        )
        log.info(
            "describe %s for user %s: %d call(s), $%.5f", gid, requester.user_id, result.calls, result.cost
        )
        return Described(gid, result, sha)

    async def again(
        self, gen: GenerationRow, requester: Requester, *, defaults: Defaults
    ) -> Described | DescribeFailed | None:
        """Describe a recorded describe's image once more (the Retry button); None when its
        image is past retention."""
        if not gen.input_images:
            return None
        stored = await self.store.get_image(gen.input_images[0])
        if stored is None:
            return None
        data, mime = stored
        detail = gen.spec.get("detail") if isinstance(gen.spec.get("detail"), str) else None
        return await self.describe_stored(
            requester,
            gen.input_images[0],
            data,
            mime,
            image_size(data),
            detail=detail,
            defaults=defaults,
            private=gen.private,
            label=f"#{gen.id} again",
        )
