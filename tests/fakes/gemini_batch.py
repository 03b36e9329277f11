"""The fake Gemini's Batch API and Files API, over the REST wire format the real SDK speaks.

Served by `FakeGemini` (tests/fakes/gemini.py) on the same port; see README_gemini.md,
"Batch API". What the real service does, closely enough for google-genai's
`client.aio.batches.create / get / cancel / list / delete` and `client.aio.files.upload /
download`:

- `POST /{v}/models/{model}:batchGenerateContent` with `batch.inputConfig.requests.requests`
  (inline: `{request: GenerateContentRequest, metadata: {key}}`) or `batch.inputConfig.fileName`
  (a JSONL file uploaded before, one `{"key": …, "request": …}` a line) answers a long-running
  Operation: `name` "batches/…", `metadata` (`@type` GenerateContentBatch, `model`,
  `displayName`, `state` BATCH_STATE_PENDING, `createTime`, `batchStats`).
- `GET /{v}/batches/{id}`: the operation as it is now. States move with time as each batch's
  script says: PENDING for `pending` seconds (or until `release()` when `hold`), RUNNING for
  `running` seconds, then the script's `outcome`: SUCCEEDED (with `metadata.output`:
  `inlinedResponses.inlinedResponses` for inline input, `responsesFile` for file input, in
  request order), FAILED (operation `error`), EXPIRED or CANCELLED (no output).
- `POST /{v}/batches/{id}:cancel`: PENDING or RUNNING -> CANCELLED; `{}`.
- `GET /{v}/batches`: newest first, `pageSize` / `pageToken`; `DELETE /{v}/batches/{id}`.
- Files: `POST /upload/{v}/files` (resumable: start, then upload/finalize chunks at the
  returned `x-goog-upload-url`), `GET /{v}/files/{id}:download?alt=media`.

Each request inside a batch is checked and answered exactly like a generateContent call
(capability checks, thought signatures, marked PNGs: `FakeGemini.issued` lists them). Per
request faults (`failures={index: kind}`): `prompt_blocked`, `image_safety`, `text_only`
(answers like the interactive faults) or `error` (the entry carries `error: {code, message}`
instead of a response). Faults for the API calls themselves (429, 500) come from
`fail_next_call`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.gemini import (
    FakeRequest,
    _capability_for,
    _error,
    _response_id,
    _retry_info,
    _usage,
    _validate,
    camelize,
)

if TYPE_CHECKING:
    from tests.fakes.gemini import FakeGemini

OUTCOMES = ("SUCCEEDED", "FAILED", "EXPIRED", "CANCELLED")
REQUEST_FAULTS = frozenset({"prompt_blocked", "image_safety", "text_only", "error"})
CALL_FAULTS = frozenset({"rate_limit", "server_error", "not_found"})
_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch"
_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput"
_ids = itertools.count(1)


def _rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class BatchScript:
    """How one batch behaves. `failures`: request index (0-based) -> fault kind, or
    (kind, kwargs)."""

    pending: float = 0.0
    running: float = 0.0
    outcome: str = "SUCCEEDED"
    failures: dict[int, Any] = field(default_factory=dict)
    hold: bool = False  # stay PENDING until release()
    echo_metadata: bool = True  # the real API has been seen to leave per-request metadata out

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome is one of {OUTCOMES}, not {self.outcome!r}")
        for index, fault in self.failures.items():
            kind = fault[0] if isinstance(fault, tuple) else fault
            if kind not in REQUEST_FAULTS:
                raise ValueError(f"request {index}: unknown fault {kind!r}")


@dataclass
class FakeFile:
    name: str  # "files/…"
    display_name: str | None
    mime_type: str
    data: bytes
    created: float


@dataclass
class FakeBatch:
    """One batch as the fake keeps it."""

    name: str  # "batches/…"
    model: str
    display_name: str
    created: float  # time.time()
    script: BatchScript
    requests: list[FakeRequest]  # each request inside, as a generateContent call would be seen
    keys: list[str | None]
    source: str  # "inline" | "file"
    input_file: str | None = None
    state: str = "PENDING"
    started: float | None = None  # time.monotonic() when RUNNING began
    entered: float = field(default_factory=time.monotonic)  # when the current state began
    ended: float | None = None  # time.time()
    responses: list[dict[str, Any]] | None = None  # the entries of the output, in order
    output_file: str | None = None
    gets: int = 0
    cancel_calls: int = 0
    released: bool = False

    @property
    def id(self) -> str:
        return self.name.split("/", 1)[1]

    @property
    def done(self) -> bool:
        return self.state in OUTCOMES


@dataclass
class BatchCall:
    method: str  # create | get | cancel | list | delete | upload | download
    name: str | None
    status: int
    at: float = field(default_factory=time.monotonic)


@dataclass
class _CallFault:
    kind: str
    remaining: int
    kw: dict[str, Any]


@dataclass
class _Upload:
    display_name: str | None
    mime_type: str
    size: int
    data: bytearray = field(default_factory=bytearray)


class FakeBatchAPI:
    """The Batch API and Files API of one FakeGemini (`fake.batches`)."""

    def __init__(self, gemini: FakeGemini) -> None:
        self.gemini = gemini
        self.jobs: dict[str, FakeBatch] = {}
        self.files: dict[str, FakeFile] = {}
        self.calls: list[BatchCall] = []
        self.default = BatchScript()
        self._scripts: deque[BatchScript] = deque()
        self._call_faults: list[_CallFault] = []
        self._uploads: dict[str, _Upload] = {}
        self._advancing: dict[str, asyncio.Lock] = {}

    # -- scripting ------------------------------------------------------------------------------

    def script_next(self, times: int = 1, **kw: Any) -> None:
        """The next `times` batches created behave as BatchScript(**kw); later ones as
        `default`."""
        for _ in range(times):
            self._scripts.append(BatchScript(**kw))

    def release(self, name: str | None = None) -> None:
        """Let held batches (all, or the one named) leave PENDING."""
        for batch in self.jobs.values():
            if name is None or batch.name == name:
                batch.released = True

    def fail_next_call(self, kind: str, times: int = 1, **kw: Any) -> None:
        """The next `times` Batch API calls (create, get, cancel, list) fail: `rate_limit` (429
        with RetryInfo `retry_delay`, default "1s"), `server_error` (500), `not_found` (404)."""
        if kind not in CALL_FAULTS:
            raise ValueError(f"unknown call fault {kind!r}; choose from {sorted(CALL_FAULTS)}")
        self._call_faults.append(_CallFault(kind, times, kw))

    @property
    def created(self) -> list[FakeBatch]:
        return list(self.jobs.values())

    @property
    def last(self) -> FakeBatch:
        return list(self.jobs.values())[-1]

    def calls_of(self, method: str) -> list[BatchCall]:
        return [c for c in self.calls if c.method == method]

    # -- wiring ---------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/{version}/batches", self._list)
        app.router.add_get("/{version}/batches/{batch_id}", self._get)
        app.router.add_post("/{version}/batches/{target}", self._cancel)
        app.router.add_delete("/{version}/batches/{batch_id}", self._delete)
        app.router.add_post("/upload/{version}/files", self._upload)
        app.router.add_get("/{version}/files/{target}", self._download)

    def _key_problem(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.")
        if key != self.gemini.api_key:
            return _error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            )
        return None

    def _call_fault(self) -> web.Response | None:
        if not self._call_faults:
            return None
        fault = self._call_faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            self._call_faults.pop(0)
        if fault.kind == "rate_limit":
            delay = fault.kw.get("retry_delay", "1s")
            return _error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota for batch requests.",
                [_retry_info(str(delay))] if delay else None,
            )
        if fault.kind == "not_found":
            return _error(404, "NOT_FOUND", "Requested entity was not found.")
        return _error(500, "INTERNAL", "An internal error has occurred. Please retry.")

    def _record(self, method: str, name: str | None, response: web.StreamResponse) -> None:
        self.calls.append(BatchCall(method, name, response.status))

    async def _guarded(
        self, request: web.Request, method: str, name: str | None
    ) -> web.Response | None:
        problem = self._key_problem(request) or self._call_fault()
        if problem is not None:
            self._record(method, name, problem)
        return problem

    # -- create -----------------------------------------------------------------------------------

    async def create(
        self, request: web.Request, rec: FakeRequest, *, parse_error: bool
    ) -> web.Response:
        """POST /{v}/models/{model}:batchGenerateContent (routed here by FakeGemini)."""
        problem = self._call_fault()
        if problem is not None:
            self._record("create", None, problem)
            return problem
        response = self._create(rec, parse_error=parse_error)
        self._record("create", response.headers.get("x-fake-batch"), response)
        return response

    def _create(self, rec: FakeRequest, *, parse_error: bool) -> web.Response:
        if parse_error:
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        cap = _capability_for(rec.model)
        if cap is None:
            return _error(404, "NOT_FOUND", f"models/{rec.model} is not found.")
        batch = rec.normalized.get("batch")
        if not isinstance(batch, dict):
            return _error(400, "INVALID_ARGUMENT", "* BatchGenerateContentRequest.batch: required")
        display_name = batch.get("displayName")
        if not display_name:
            return _error(400, "INVALID_ARGUMENT", "* GenerateContentBatch.display_name: required")
        config = batch.get("inputConfig") or {}
        # The raw (not camelised) requests: property names inside specs stay as sent.
        raw_batch = rec.body.get("batch") or {}
        raw_config = raw_batch.get("inputConfig", raw_batch.get("input_config")) or {}
        entries: list[dict[str, Any]]
        source, input_file = "inline", None
        if "fileName" in config:
            input_file = str(config["fileName"])
            file = self.files.get(input_file)
            if file is None:
                return _error(404, "NOT_FOUND", f"File {input_file} not found.")
            try:
                entries = [json.loads(line) for line in file.data.decode().splitlines() if line]
            except ValueError:
                return _error(400, "INVALID_ARGUMENT", f"{input_file} is not valid JSONL.")
            source = "file"
        else:
            raw_requests = (raw_config.get("requests") or {}).get("requests")
            if not isinstance(raw_requests, list) or not raw_requests:
                return _error(
                    400, "INVALID_ARGUMENT", "* InputConfig: requests or file_name required"
                )
            entries = raw_requests
        requests: list[FakeRequest] = []
        keys: list[str | None] = []
        for entry in entries:
            body = entry.get("request") or {}
            metadata = entry.get("metadata") or {}
            key = entry.get("key", metadata.get("key") if isinstance(metadata, dict) else None)
            keys.append(None if key is None else str(key))
            requests.append(
                FakeRequest(
                    model=rec.model,
                    api_version=rec.api_version,
                    method="generateContent",
                    body=body,
                    normalized=camelize(body),
                    headers=rec.headers,
                    arrived=time.monotonic(),
                )
            )
        script = self._scripts.popleft() if self._scripts else BatchScript(**vars(self.default))
        name = f"batches/fake{next(_ids)}{uuid.uuid4().hex[:8]}"
        fake = FakeBatch(
            name=name,
            model=rec.model,
            display_name=str(display_name),
            created=time.time(),
            script=script,
            requests=requests,
            keys=keys,
            source=source,
            input_file=input_file,
        )
        self.jobs[name] = fake
        self._advancing[name] = asyncio.Lock()
        response = web.json_response(self._operation(fake))
        response.headers["x-fake-batch"] = name
        return response

    # -- get, cancel, list, delete -------------------------------------------------------------

    async def _get(self, request: web.Request) -> web.StreamResponse:
        name = f"batches/{request.match_info['batch_id']}"
        problem = await self._guarded(request, "get", name)
        if problem is not None:
            return problem
        batch = self.jobs.get(name)
        if batch is None:
            response = _error(404, "NOT_FOUND", "Requested entity was not found.")
        else:
            batch.gets += 1
            await self._advance(batch)
            response = web.Response(
                text=json.dumps(self._operation(batch)), content_type="application/json"
            )
        self._record("get", name, response)
        return response

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        target = request.match_info["target"]
        batch_id, _, method = target.partition(":")
        name = f"batches/{batch_id}"
        if method != "cancel":
            return _error(404, "NOT_FOUND", f"Unknown method {method or '(none)'}.")
        problem = await self._guarded(request, "cancel", name)
        if problem is not None:
            return problem
        batch = self.jobs.get(name)
        if batch is None:
            response = _error(404, "NOT_FOUND", "Requested entity was not found.")
        else:
            batch.cancel_calls += 1
            await self._advance(batch)
            if not batch.done:
                self._enter(batch, "CANCELLED")
            response = web.json_response({})
        self._record("cancel", name, response)
        return response

    async def _list(self, request: web.Request) -> web.StreamResponse:
        problem = await self._guarded(request, "list", None)
        if problem is not None:
            return problem
        size = int(request.query.get("pageSize") or 50)
        start = int(request.query.get("pageToken") or 0)
        newest = list(reversed(self.jobs.values()))
        page = newest[start : start + size]
        body: dict[str, Any] = {"operations": [self._operation(b, output=False) for b in page]}
        if start + size < len(newest):
            body["nextPageToken"] = str(start + size)
        response = web.json_response(body)
        self._record("list", None, response)
        return response

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        name = f"batches/{request.match_info['batch_id']}"
        problem = await self._guarded(request, "delete", name)
        if problem is not None:
            return problem
        if self.jobs.pop(name, None) is None:
            response = _error(404, "NOT_FOUND", "Requested entity was not found.")
        else:
            response = web.json_response({})
        self._record("delete", name, response)
        return response

    # -- states ---------------------------------------------------------------------------------

    def _enter(self, batch: FakeBatch, state: str) -> None:
        batch.state = state
        batch.entered = time.monotonic()
        if state == "RUNNING":
            batch.started = batch.entered
        if state in OUTCOMES:
            batch.ended = time.time()

    async def _advance(self, batch: FakeBatch) -> None:
        """Move the batch along its script as far as the clock says."""
        async with self._advancing[batch.name]:
            now = time.monotonic()
            script = batch.script
            if batch.state == "PENDING":
                if script.hold and not batch.released:
                    return
                if now - batch.entered < script.pending and not batch.released:
                    return
                if script.outcome == "EXPIRED" and script.running <= 0:
                    # Never started: Google gave up on it after its 24 hours.
                    self._enter(batch, "EXPIRED")
                    return
                self._enter(batch, "RUNNING")
            if batch.state == "RUNNING":
                if now - batch.entered < script.running:
                    return
                if script.outcome == "SUCCEEDED":
                    batch.responses = await asyncio.to_thread(self._answer_all, batch)
                    if batch.source == "file":
                        batch.output_file = self._store_file(
                            f"{batch.display_name}-responses",
                            "application/jsonl",
                            "\n".join(
                                json.dumps({"key": key, **entry})
                                for key, entry in zip(batch.keys, batch.responses, strict=True)
                            ).encode(),
                        )
                self._enter(batch, script.outcome)

    def _answer_all(self, batch: FakeBatch) -> list[dict[str, Any]]:
        """Runs in a thread: every request's entry, in order."""
        out: list[dict[str, Any]] = []
        for index, rec in enumerate(batch.requests):
            entry = self._answer_one(batch, index, rec)
            key = batch.keys[index]
            if batch.source == "inline" and batch.script.echo_metadata and key is not None:
                entry["metadata"] = {"key": key}
            out.append(entry)
        return out

    def _answer_one(self, batch: FakeBatch, index: int, rec: FakeRequest) -> dict[str, Any]:
        fault = batch.script.failures.get(index)
        kind, kw = (fault if isinstance(fault, tuple) else (fault, {})) if fault else (None, {})
        if kind == "error":
            return {
                "error": {
                    "code": int(kw.get("code", 13)),
                    "message": kw.get("message", "Internal error encountered."),
                }
            }
        cap = _capability_for(rec.model)
        assert cap is not None
        problem = _validate(rec, cap)
        if problem is None:
            try:
                self.gemini._verify_signatures(rec.contents)
            except Exception as exc:  # _BadSignature
                problem = str(getattr(exc, "message", exc))
        if problem is not None:
            return {"error": {"code": 3, "message": problem}}
        rec.fault = kind
        if kind == "prompt_blocked":
            return {
                "response": {
                    "promptFeedback": {"blockReason": kw.get("reason", "SAFETY")},
                    "usageMetadata": _usage(rec, output=0, thoughts=0),
                    "modelVersion": rec.model,
                    "responseId": _response_id(),
                }
            }
        if kind == "image_safety":
            candidate: dict[str, Any] = {
                "finishReason": kw.get("finish_reason", "IMAGE_SAFETY"),
                "index": 0,
                "finishMessage": kw.get(
                    "message", "The image was filtered out by Google's safety rules."
                ),
            }
            return {
                "response": {
                    "candidates": [candidate],
                    "usageMetadata": _usage(rec, output=0, thoughts=120),
                    "modelVersion": rec.model,
                    "responseId": _response_id(),
                }
            }
        if kind == "text_only":
            return {
                "response": self.gemini._text_response(
                    rec, kw.get("text", "I can't create that image, but I can describe it.")
                )
            }
        image_config = rec.image_config
        size = str(image_config.get("imageSize") or cap.default_size)
        aspect = str(image_config.get("aspectRatio") or "1:1")
        return {"response": json.loads(self.gemini._image_response(rec, cap, size, aspect))}

    def _operation(self, batch: FakeBatch, *, output: bool = True) -> dict[str, Any]:
        count = len(batch.requests)
        stats: dict[str, str] = {"requestCount": str(count)}
        if batch.responses is not None:
            failed = sum("error" in e for e in batch.responses)
            stats.update(successfulRequestCount=str(count - failed), failedRequestCount=str(failed))
        else:
            stats["pendingRequestCount"] = str(count)
        metadata: dict[str, Any] = {
            "@type": _TYPE,
            "model": f"models/{batch.model}",
            "displayName": batch.display_name,
            "createTime": _rfc3339(batch.created),
            "updateTime": _rfc3339(time.time()),
            "batchStats": stats,
            "state": f"BATCH_STATE_{batch.state}",
            "name": batch.name,
        }
        if batch.ended is not None:
            metadata["endTime"] = _rfc3339(batch.ended)
        body: dict[str, Any] = {"name": batch.name, "metadata": metadata}
        if batch.done:
            body["done"] = True
            if batch.state == "SUCCEEDED" and output:
                if batch.output_file is not None:
                    out: dict[str, Any] = {"responsesFile": batch.output_file}
                else:
                    out = {"inlinedResponses": {"inlinedResponses": batch.responses or []}}
                metadata["output"] = out
                body["response"] = {"@type": _OUTPUT_TYPE, **out}
            elif batch.state == "FAILED":
                body["error"] = {"code": 13, "message": "The batch failed."}
        return body

    # -- files ----------------------------------------------------------------------------------

    def _store_file(self, display_name: str | None, mime_type: str, data: bytes) -> str:
        name = f"files/fake{next(_ids)}{uuid.uuid4().hex[:8]}"
        self.files[name] = FakeFile(name, display_name, mime_type, data, time.time())
        return name

    def _file_json(self, file: FakeFile) -> dict[str, Any]:
        return {
            "name": file.name,
            "displayName": file.display_name,
            "mimeType": file.mime_type,
            "sizeBytes": str(len(file.data)),
            "createTime": _rfc3339(file.created),
            "state": "ACTIVE",
            "uri": f"{self.gemini.url}/v1beta/{file.name}",
            "source": "UPLOADED",
        }

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        command = request.headers.get("X-Goog-Upload-Command", "").lower()
        upload_id = request.query.get("upload_id")
        if upload_id is None:  # start a resumable upload
            problem = self._key_problem(request)
            if problem is not None:
                return problem
            if "start" not in command:
                return _error(400, "INVALID_ARGUMENT", "Expected X-Goog-Upload-Command: start")
            raw = await request.read()
            meta = (json.loads(raw) if raw else {}).get("file") or {}
            upload_id = uuid.uuid4().hex
            self._uploads[upload_id] = _Upload(
                display_name=meta.get("displayName", meta.get("display_name")),
                mime_type=request.headers.get(
                    "X-Goog-Upload-Header-Content-Type",
                    meta.get("mimeType", meta.get("mime_type", "application/octet-stream")),
                ),
                size=int(request.headers.get("X-Goog-Upload-Header-Content-Length") or 0),
            )
            response = web.json_response({})
            response.headers["x-goog-upload-url"] = (
                f"{self.gemini.url}/upload/{request.match_info['version']}/files"
                f"?upload_id={upload_id}&upload_protocol=resumable"
            )
            response.headers["X-Goog-Upload-Status"] = "active"
            return response
        upload = self._uploads.get(upload_id)
        if upload is None:
            return _error(404, "NOT_FOUND", "Unknown upload.")
        offset = int(request.headers.get("X-Goog-Upload-Offset") or 0)
        if offset != len(upload.data):
            return _error(400, "INVALID_ARGUMENT", f"Offset {offset} is not {len(upload.data)}.")
        upload.data.extend(await request.read())
        if "finalize" not in command:
            response = web.json_response({})
            response.headers["X-Goog-Upload-Status"] = "active"
            return response
        del self._uploads[upload_id]
        name = self._store_file(upload.display_name, upload.mime_type, bytes(upload.data))
        response = web.json_response({"file": self._file_json(self.files[name])})
        response.headers["X-Goog-Upload-Status"] = "final"
        self.calls.append(BatchCall("upload", name, 200))
        return response

    async def _download(self, request: web.Request) -> web.StreamResponse:
        file_id, _, method = request.match_info["target"].partition(":")
        name = f"files/{file_id}"
        problem = self._key_problem(request)
        if problem is not None:
            return problem
        file = self.files.get(name)
        if file is None:
            response: web.StreamResponse = _error(404, "NOT_FOUND", f"File {name} not found.")
        elif method == "download":
            response = web.Response(body=file.data, content_type="application/octet-stream")
        elif not method:
            response = web.json_response(self._file_json(file))
        else:
            response = _error(404, "NOT_FOUND", f"Unknown method {method}.")
        self.calls.append(BatchCall("download", name, response.status))
        return response
