"""The fake's Batch API speaks Google's REST wire format (what the SDK then translates): a
long-running Operation whose metadata carries BATCH_STATE_* states, inline responses under
output.inlinedResponses.inlinedResponses, a cancel that ends a pending batch."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.fakes.gemini import FakeGemini

BODY = {
    "batch": {
        "displayName": "wire",
        "inputConfig": {
            "requests": {
                "requests": [
                    {
                        "request": {
                            "contents": [{"role": "user", "parts": [{"text": '{"subject": "x"}'}]}],
                            "generationConfig": {
                                "responseModalities": ["TEXT", "IMAGE"],
                                "imageConfig": {"aspectRatio": "1:1", "imageSize": "1K"},
                            },
                        },
                        "metadata": {"key": "k1"},
                    }
                ]
            }
        },
    }
}


async def test_the_wire_format(fake_gemini: FakeGemini) -> None:
    headers = {"x-goog-api-key": fake_gemini.api_key}
    base = f"{fake_gemini.url}/v1beta"
    fake_gemini.batches.script_next(pending=0.1)
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(
            f"{base}/models/gemini-3-pro-image:batchGenerateContent", json=BODY
        ) as response:
            assert response.status == 200
            created = await response.json()
        name = created["name"]
        assert name.startswith("batches/")
        meta = created["metadata"]
        assert meta["@type"].endswith("GenerateContentBatch")
        assert meta["state"] == "BATCH_STATE_PENDING" and meta["displayName"] == "wire"
        assert meta["model"] == "models/gemini-3-pro-image"
        assert meta["batchStats"] == {"requestCount": "1", "pendingRequestCount": "1"}
        assert "done" not in created

        for _ in range(100):
            async with http.get(f"{base}/{name}") as response:
                got = await response.json()
            if got.get("done"):
                break
            await asyncio.sleep(0.05)
        assert got["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
        (entry,) = got["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
        assert entry["metadata"] == {"key": "k1"}
        assert entry["response"]["candidates"][0]["finishReason"] == "STOP"
        assert got["response"]["@type"].endswith("GenerateContentBatchOutput")

        fake_gemini.batches.script_next(hold=True)
        async with http.post(
            f"{base}/models/gemini-3-pro-image:batchGenerateContent", json=BODY
        ) as response:
            held = (await response.json())["name"]
        async with http.post(f"{base}/{held}:cancel") as response:
            assert response.status == 200 and await response.json() == {}
        async with http.get(f"{base}/{held}") as response:
            assert (await response.json())["metadata"]["state"] == "BATCH_STATE_CANCELLED"
        async with http.get(f"{base}/batches/nope") as response:
            assert response.status == 404
        async with http.get(f"{base}/batches", params={"pageSize": "1"}) as response:
            listed = await response.json()
        assert [op["name"] for op in listed["operations"]] == [held]
        assert listed["nextPageToken"] == "1"

    async with aiohttp.ClientSession() as anonymous, anonymous.get(f"{base}/{held}") as response:
        assert response.status == 403  # no key
