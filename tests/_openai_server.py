"""A local OpenAI-compatible chat server with a provider's rate limits, on 127.0.0.1.

``POST /v1/chat/completions`` answers like OpenAI's API, streamed (SSE, with the
final usage chunk when ``stream_options.include_usage``) or not, with ``usage``.
It enforces ``requests_per_second`` and ``tokens_per_second`` over sliding windows
of ``window`` seconds, measured on arrival, and answers 429 with ``retry-after``,
``retry-after-ms`` and ``x-ratelimit-*`` headers when a request would exceed either::

    with openai_server(ServerLimits(requests_per_second=40, tokens_per_second=8000)) as server:
        model = ChatOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        model.invoke("cost=120 hello")      # this call costs 120 tokens
    print(server.statistics())

A call costs the tokens named by ``cost=N`` in its messages (else ``default_cost``).
The server runs on its own thread and loop, so sync and async clients, tests and
benchmarks share it. ``openai_server_process`` runs it in a child process instead
(``python -m tests._openai_server``), so a benchmark's client does not share the
server's interpreter; `RemoteServer` reads its statistics and starts outages over HTTP.
Used by the tests and by ``benchmarks/bench_llm.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = [
    "ChatModels",
    "OpenAIServer",
    "RemoteServer",
    "ServerLimits",
    "ServerStatistics",
    "openai_server",
    "openai_server_process",
]

_COST = re.compile(r"\bcost=(\d+)\b")
_SAME_INSTANT = 1e-6
_REPLY = "Hello from the local server, one word at a time."


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The provider's limits and manners. None: no limit of that kind."""

    requests_per_second: float | None = None
    """Requests accepted in any window of ``window`` seconds; above it, 429."""
    tokens_per_second: float | None = None
    """Tokens (a call's total cost) accepted in any window of ``window`` seconds."""
    window: float = 1.0
    """The sliding window, in seconds."""
    default_cost: int = 30
    """Tokens a call costs when its messages name no ``cost=N``."""
    latency: float = 0.0
    """Seconds before each accepted answer (and between streamed chunks, split)."""
    retry_after_headers: tuple[str, ...] = ("retry-after", "retry-after-ms")
    """Which Retry-After headers a 429 carries; () leaves only ``x-ratelimit-*``."""


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """What the server saw, on its own clock."""

    requests: int
    """Requests received, whatever the answer."""
    ok: int
    """Requests answered 200."""
    rejected: int
    """Requests answered 429 (limits exceeded or an outage)."""
    early_retries: int
    """Requests repeating a rejected one before the Retry-After it was given had passed."""
    tokens: int
    """Tokens of the accepted requests."""
    arrivals: list[float] = field(default_factory=list)
    """Arrival time of every request (``time.monotonic()``)."""
    rejections: list[float] = field(default_factory=list)
    """Time of every 429 sent (``time.monotonic()``)."""
    rejected_for: dict[str, int] = field(default_factory=dict)
    """429s by cause: ``requests`` or ``tokens`` (a window was full; both if both
    were), ``answer_next`` / ``outage`` (scripted)."""


@dataclass(slots=True)
class _Forced:
    status: int
    headers: dict[str, str]
    remaining: int | None
    until: float | None


class OpenAIServer:
    """The server's state and handler; start it with `openai_server`."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.url = ""
        self._lock = threading.Lock()
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()
        self._tokens_in_window = 0
        self._not_before: dict[str, float] = {}
        self._forced: list[_Forced] = []
        self._arrivals: list[float] = []
        self._rejections: list[float] = []
        self._rejected_for: Counter[str] = Counter()
        self._ok = 0
        self._early = 0
        self._granted_tokens = 0

    @property
    def base_url(self) -> str:
        """The URL to give an OpenAI client (``.../v1``)."""
        return f"{self.url}/v1"

    def statistics(self) -> ServerStatistics:
        """A snapshot of what the server saw so far."""
        with self._lock:
            return ServerStatistics(
                requests=len(self._arrivals),
                ok=self._ok,
                rejected=len(self._rejections),
                early_retries=self._early,
                tokens=self._granted_tokens,
                arrivals=list(self._arrivals),
                rejections=list(self._rejections),
                rejected_for=dict(self._rejected_for),
            )

    def answer_next(
        self, count: int, status: int = 429, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer the next ``count`` requests with ``status`` and ``headers``, no body work."""
        with self._lock:
            self._forced.append(_Forced(status, dict(headers or {}), count, None))

    def outage(self, seconds: float, retry_after: float) -> None:
        """From now, for ``seconds``, answer every request 429 with ``retry-after``."""
        headers = {"retry-after": f"{retry_after:g}"}
        with self._lock:
            self._forced.append(_Forced(429, headers, None, time.monotonic() + seconds))

    async def control_statistics(self, request: web.Request) -> web.Response:
        return web.json_response(dataclasses.asdict(self.statistics()))

    async def control_outage(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.outage(float(body["seconds"]), float(body["retry_after"]))
        return web.json_response({})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages = body.get("messages", [])
        text = " ".join(str(message.get("content", "")) for message in messages)
        key = hashlib.blake2b(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        match = _COST.search(text)
        cost = int(match.group(1)) if match else self.limits.default_cost
        with self._lock:
            now = time.monotonic()
            self._arrivals.append(now)
            if now < self._not_before.pop(key, now) - _SAME_INSTANT:
                self._early += 1
            forced = self._forced_answer(now)
            if forced is not None:
                status, headers, cause = forced
                if status == 429:
                    self._reject(key, now, headers, cause)
                return _error(status, headers)
            wait, causes = self._wait(now, cost)
            if wait is not None:
                headers = self._rate_headers(now, wait)
                self._reject(key, now, headers, " and ".join(causes))
                return _error(429, headers)
            self._admit(now, cost)
            self._ok += 1
            headers = self._rate_headers(now, None)
        completion = max(1, cost // 2)
        usage = {
            "prompt_tokens": cost - completion,
            "completion_tokens": completion,
            "total_tokens": cost,
        }
        model = str(body.get("model", "gpt-test"))
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, model, usage if include_usage else None, headers)
        if self.limits.latency:
            await asyncio.sleep(self.limits.latency)
        return web.json_response(_completion(model, usage), headers=headers)

    def _forced_answer(self, now: float) -> tuple[int, dict[str, str], str] | None:
        while self._forced:
            forced = self._forced[0]
            if forced.until is not None and now >= forced.until:
                self._forced.pop(0)
                continue
            if forced.remaining is not None:
                forced.remaining -= 1
                if forced.remaining == 0:
                    self._forced.pop(0)
            cause = "answer_next" if forced.until is None else "outage"
            return forced.status, forced.headers, cause
        return None

    def _reject(self, key: str, now: float, headers: Mapping[str, str], cause: str) -> None:
        self._rejections.append(now)
        self._rejected_for[cause] += 1
        wait = _header_seconds(headers)
        if wait is not None:
            self._not_before[key] = now + wait

    def _expire(self, now: float) -> None:
        horizon = now - self.limits.window
        while self._requests and self._requests[0] <= horizon:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] <= horizon:
            self._tokens_in_window -= self._tokens.popleft()[1]

    def _wait(self, now: float, cost: int) -> tuple[float | None, list[str]]:
        """Seconds until this request fits both windows (None: now), and which were full."""
        self._expire(now)
        limits, wait, causes = self.limits, 0.0, []
        if limits.requests_per_second is not None:
            allowed = limits.requests_per_second * limits.window
            if len(self._requests) + 1 > allowed:
                index = len(self._requests) - math.floor(allowed)
                wait = max(wait, self._requests[index] + limits.window - now)
                causes.append("requests")
        if limits.tokens_per_second is not None:
            allowed = limits.tokens_per_second * limits.window
            excess = self._tokens_in_window + cost - allowed
            if excess > 0:
                causes.append("tokens")
            for moment, tokens in self._tokens:
                if excess <= 0:
                    break
                excess -= tokens
                wait = max(wait, moment + limits.window - now)
        return (wait, causes) if wait > 0 else (None, [])

    def _admit(self, now: float, cost: int) -> None:
        self._requests.append(now)
        self._tokens.append((now, cost))
        self._tokens_in_window += cost
        self._granted_tokens += cost

    def _rate_headers(self, now: float, wait: float | None) -> dict[str, str]:
        limits = self.limits
        headers: dict[str, str] = {}
        if wait is not None:
            if "retry-after-ms" in limits.retry_after_headers:
                headers["retry-after-ms"] = f"{wait * 1000:.0f}"
            if "retry-after" in limits.retry_after_headers:
                headers["retry-after"] = str(math.ceil(wait))
        if limits.requests_per_second is not None:
            allowed = int(limits.requests_per_second * limits.window)
            reset = self._requests[0] + limits.window - now if self._requests else 0.0
            headers["x-ratelimit-limit-requests"] = str(allowed)
            headers["x-ratelimit-remaining-requests"] = str(max(0, allowed - len(self._requests)))
            headers["x-ratelimit-reset-requests"] = _duration(max(reset, wait or 0.0))
        if limits.tokens_per_second is not None:
            allowed = int(limits.tokens_per_second * limits.window)
            reset = self._tokens[0][0] + limits.window - now if self._tokens else 0.0
            headers["x-ratelimit-limit-tokens"] = str(allowed)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, allowed - self._tokens_in_window))
            headers["x-ratelimit-reset-tokens"] = _duration(max(reset, wait or 0.0))
        return headers

    async def _stream(
        self,
        request: web.Request,
        model: str,
        usage: dict[str, int] | None,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={**headers, "content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await response.prepare(request)
        words = _REPLY.split(" ")
        pause = self.limits.latency / (len(words) + 1)
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": word if i == 0 else f" {word}"} for i, word in enumerate(words)]
        for delta in deltas:
            if pause:
                await asyncio.sleep(pause)
            await response.write(_event(_chunk(model, [_choice(delta, None)])))
        await response.write(_event(_chunk(model, [_choice({}, "stop")])))
        if usage is not None:
            await response.write(_event(_chunk(model, [], usage)))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@contextmanager
def openai_server(limits: ServerLimits | None = None) -> Iterator[OpenAIServer]:
    """Start the server on 127.0.0.1 (a free port) on its own thread; stop it on exit."""
    server = OpenAIServer(limits or ServerLimits())
    ready = threading.Event()
    loop_box: list[asyncio.AbstractEventLoop] = []
    stop_box: list[asyncio.Event] = []
    failure: list[BaseException] = []

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", server.handle)
        # Other clients (anthropic's SDK) reach it only for answers set by `answer_next`.
        app.router.add_post("/v1/messages", server.handle)
        app.router.add_get("/_statistics", server.control_statistics)
        app.router.add_post("/_outage", server.control_outage)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            stop = asyncio.Event()
            loop_box.append(asyncio.get_running_loop())
            stop_box.append(stop)
            ready.set()
            await stop.wait()
        finally:
            await runner.cleanup()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as error:  # reported to the starting thread
            failure.append(error)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="openai-server", daemon=True)
    thread.start()
    ready.wait()
    if failure:
        raise RuntimeError("the local OpenAI server did not start") from failure[0]
    try:
        yield server
    finally:
        loop_box[0].call_soon_threadsafe(stop_box[0].set)
        thread.join()


class RemoteServer:
    """The server running in a child process (`openai_server_process`), seen from outside."""

    def __init__(self, url: str) -> None:
        self.url = url

    @property
    def base_url(self) -> str:
        """The URL to give an OpenAI client (``.../v1``)."""
        return f"{self.url}/v1"

    def statistics(self) -> ServerStatistics:
        """What the server saw so far (a blocking HTTP request to it)."""
        with urllib.request.urlopen(f"{self.url}/_statistics", timeout=30) as response:
            return ServerStatistics(**json.loads(response.read()))

    def outage(self, seconds: float, retry_after: float) -> None:
        """Start an outage now (a blocking HTTP request to it); see `OpenAIServer.outage`."""
        body = json.dumps({"seconds": seconds, "retry_after": retry_after}).encode()
        request = urllib.request.Request(
            f"{self.url}/_outage", data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30):
            pass


@contextmanager
def openai_server_process(limits: ServerLimits | None = None) -> Iterator[RemoteServer]:
    """Start the server in a child process on 127.0.0.1; stop it on exit."""
    options = json.dumps(dataclasses.asdict(limits or ServerLimits()))
    child = subprocess.Popen(
        [sys.executable, "-m", "tests._openai_server", options],
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        if not url:
            raise RuntimeError("the local OpenAI server process did not start")
        yield RemoteServer(url)
    finally:
        assert child.stdin is not None
        child.stdin.close()  # the child serves until its stdin closes
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()


def _serve_until_stdin_closes(options: str) -> None:
    values = json.loads(options)
    values["retry_after_headers"] = tuple(values["retry_after_headers"])
    with openai_server(ServerLimits(**values)) as server:
        print(server.url, flush=True)
        sys.stdin.read()


class ChatModels:
    """ChatOpenAI models on a server, each with HTTP clients of its own, closed by `aclose`.

    A model left with open keep-alive connections when its event loop closes leaks
    them (uvloop reports it); closing the clients a test made ends them in time::

        models = ChatModels(server)
        answer = await models(max_retries=0).ainvoke("cost=10 hi")
        await models.aclose()
    """

    def __init__(self, server: OpenAIServer | RemoteServer) -> None:
        self.server = server
        self._clients: list[tuple[Any, Any]] = []

    def __call__(self, **options: Any) -> Any:
        """A ChatOpenAI on the server: no SDK retries, usage streamed, ``options`` on top."""
        import openai
        from langchain_openai import ChatOpenAI

        clients = (openai.DefaultAsyncHttpxClient(), openai.DefaultHttpxClient())
        self._clients.append(clients)
        settings: dict[str, Any] = {"max_retries": 0, "stream_usage": True, **options}
        return ChatOpenAI(
            model="gpt-test",
            base_url=self.server.base_url,
            api_key="test",
            http_async_client=clients[0],
            http_client=clients[1],
            **settings,
        )

    async def aclose(self) -> None:
        """Close every model's HTTP clients."""
        for async_client, sync_client in self._clients:
            await async_client.aclose()
            sync_client.close()
        self._clients.clear()


def _error(status: int, headers: Mapping[str, str]) -> web.Response:
    kind = "rate_limit_exceeded" if status == 429 else "server_error"
    body = {"error": {"message": f"HTTP {status} from the local server", "type": kind}}
    return web.json_response(body, status=status, headers=dict(headers))


def _header_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a 429 asks for, when given in (milli)seconds; other forms are not tracked."""
    for name, unit in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return float(headers[name]) * unit
        except (KeyError, ValueError):
            continue
    return None


def _duration(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``20ms``, ``6m0s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.3g}s" if minutes else f"{rest:.3g}s"


def _completion(model: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-local",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": _REPLY},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage,
    }


def _choice(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}


def _chunk(
    model: str, choices: list[dict[str, Any]], usage: dict[str, int] | None = None
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-local",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


if __name__ == "__main__":
    _serve_until_stdin_closes(sys.argv[1])
