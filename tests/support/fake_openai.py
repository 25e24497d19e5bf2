"""A small OpenAI-compatible server on 127.0.0.1 for tests and benchmarks: real HTTP, real SSE streaming.

    with FakeOpenAIServer() as server:
        server.enqueue(content="hello")                       # next reply
        server.enqueue(tool_calls=[{"name": "calc", "arguments": {"x": 1}}])
        server.enqueue(fault="429", retry_after=1)            # faults: 500, 429, 400, 401, hang, malformed, drop
        litellm.acompletion(model="openai/fake", api_base=server.base_url, api_key="sk-test", messages=[...])
        server.requests                                       # what it received (JSON bodies and headers)

With an empty queue it replies with a deterministic echo of the last user message. Streams end with a usage
chunk when the client asks for it (`stream_options.include_usage`). `latency` delays every reply; `token_delay`
spaces stream chunks. A "drop" fault closes the connection (mid-stream for streamed requests).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

FAULTS = {None, "500", "503", "429", "400", "401", "hang", "malformed", "drop"}


@dataclass
class Scripted:
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    fault: str | None = None
    retry_after: float | None = None
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    latency: float | None = None


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float = field(default_factory=time.time)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages") or []

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def estimate_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


class FakeOpenAIServer:
    def __init__(self, *, latency: float = 0.0, token_delay: float = 0.0, model: str = "fake-model") -> None:
        self.latency = latency
        self.token_delay = token_delay
        self.model = model
        self.port: int | None = None
        self.requests: list[ReceivedRequest] = []
        self.record_requests = True
        self._queue: collections.deque[Scripted] = collections.deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._hanging: set[asyncio.Future] = set()

    # -- control -----------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(
        self,
        content: str | None = None,
        *,
        tool_calls: list[dict[str, Any]] | None = None,
        fault: str | None = None,
        retry_after: float | None = None,
        finish_reason: str | None = None,
        usage: dict[str, int] | None = None,
        latency: float | None = None,
    ) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {sorted(f for f in FAULTS if f)}")
        with self._lock:
            self._queue.append(Scripted(content, tool_calls, fault, retry_after, finish_reason, usage, latency))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def start(self) -> FakeOpenAIServer:
        self.port = _free_port()
        self._thread = threading.Thread(target=self._serve, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- server ------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        # Injected hangs and drops end requests abruptly; aiohttp would log each as an error.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._main())
        loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=512)
        await site.start()
        self._ready.set()
        await self._stop.wait()
        for future in list(self._hanging):
            future.cancel()
        await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    def _next(self) -> Scripted:
        with self._lock:
            return self._queue.popleft() if self._queue else Scripted()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return web.json_response({"error": {"message": "invalid JSON body", "type": "invalid_request"}}, status=400)
        if self.record_requests:
            with self._lock:
                self.requests.append(ReceivedRequest(request.path, dict(request.headers), body))
        script = self._next()
        delay = script.latency if script.latency is not None else self.latency
        if delay:
            await asyncio.sleep(delay)
        fault = script.fault
        stream = bool(body.get("stream"))
        if fault in {"500", "503"}:
            return web.json_response(
                {"error": {"message": "fake upstream failure", "type": "server_error", "code": None}}, status=int(fault)
            )
        if fault == "429":
            headers = {"Retry-After": str(script.retry_after)} if script.retry_after is not None else {}
            return web.json_response(
                {"error": {"message": "Rate limit reached (fake)", "type": "rate_limit_error", "code": "rate_limit"}},
                status=429,
                headers=headers,
            )
        if fault == "400":
            return web.json_response(
                {"error": {"message": "bad request (fake)", "type": "invalid_request_error", "code": None}}, status=400
            )
        if fault == "401":
            return web.json_response(
                {"error": {"message": "Incorrect API key provided (fake)", "type": "invalid_request_error"}},
                status=401,
            )
        if fault == "hang":
            future = asyncio.get_running_loop().create_future()
            self._hanging.add(future)
            try:
                await asyncio.wait_for(future, 3600)
            except (asyncio.CancelledError, TimeoutError):
                pass
            finally:
                self._hanging.discard(future)
            raise ConnectionResetError("hang ended")
        if fault == "drop" and not stream:
            request.transport.close()
            raise ConnectionResetError("dropped")
        if fault == "malformed" and not stream:
            return web.Response(body=b'{"id": "chatcmpl-x", "choices": [ {"mess', content_type="application/json")

        content, tool_calls = self._reply(body, script)
        prompt_tokens = sum(estimate_tokens(_text_of(m.get("content"))) + 3 for m in body.get("messages") or [])
        completion_tokens = estimate_tokens(content or "") + sum(
            estimate_tokens(tc["function"]["arguments"]) for tc in tool_calls
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        usage.update(script.usage or {})
        finish = script.finish_reason or ("tool_calls" if tool_calls else "stop")
        response_id = "chatcmpl-" + uuid.uuid4().hex[:24]
        model = body.get("model") or self.model
        if stream:
            return await self._stream(request, body, response_id, model, content, tool_calls, usage, finish, fault)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return web.json_response(
            {
                "id": response_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            }
        )

    def _reply(self, body: dict[str, Any], script: Scripted) -> tuple[str | None, list[dict[str, Any]]]:
        tool_calls = []
        for index, call in enumerate(script.tool_calls or []):
            arguments = call.get("arguments", {})
            tool_calls.append(
                {
                    "id": call.get("id") or f"call_{index}_{uuid.uuid4().hex[:8]}",
                    "type": "function",
                    "function": {
                        "name": call["name"],
                        "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                    },
                }
            )
        if script.content is not None:
            return script.content, tool_calls
        if tool_calls:
            return None, tool_calls
        last_user = next(
            (_text_of(m.get("content")) for m in reversed(body.get("messages") or []) if m.get("role") == "user"), ""
        )
        return f"Echo: {last_user}", tool_calls

    async def _stream(self, request, body, response_id, model, content, tool_calls, usage, finish, fault):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            payload = {
                "id": response_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                **extra,
            }
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        await response.write(chunk({"role": "assistant", "content": ""}))
        pieces = _split_tokens(content or "")
        for position, piece in enumerate(pieces):
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            await response.write(chunk({"content": piece}))
            if fault == "drop" and position >= min(1, len(pieces) - 1):
                request.transport.close()
                return response
            if fault == "malformed" and position >= min(1, len(pieces) - 1):
                await response.write(b'data: {"id": "broken", "choices": [{"delta": {"content": \n\n')
                await response.write(b"data: [DONE]\n\n")
                return response
        for index, call in enumerate(tool_calls):
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            head = {"index": index, "id": call["id"], "type": "function"}
            await response.write(
                chunk({"tool_calls": [{**head, "function": {"name": call["function"]["name"], "arguments": ""}}]})
            )
            for part in (arguments[:half], arguments[half:]):
                await response.write(chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]}))
        if fault in {"drop", "malformed"} and not pieces:
            request.transport.close()
            return response
        await response.write(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            payload = {
                "id": response_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _split_tokens(text: str) -> list[str]:
    """Word-ish pieces that join back to the exact text."""
    if not text:
        return []
    pieces, current = [], ""
    for char in text:
        current += char
        if char == " ":
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    return pieces


def main() -> None:
    """Serve forever (for benchmarks that want the server in its own process): `--port N --latency S`."""
    import argparse

    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    server = FakeOpenAIServer(latency=args.latency)
    server.record_requests = False
    if args.port:
        _start_on(server, args.port)
    else:
        server.start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


def _start_on(server: FakeOpenAIServer, port: int) -> None:
    server.port = port
    server._thread = threading.Thread(target=server._serve, name="fake-openai", daemon=True)
    server._thread.start()
    if not server._ready.wait(10):
        raise RuntimeError("fake OpenAI server did not start")


if __name__ == "__main__":
    main()
