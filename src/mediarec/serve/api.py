"""The HTTP application of ``mediarec serve`` (docs/serve.md).

One served :class:`~mediarec.recommender.Recommender` (built by :mod:`mediarec.app`) answers every
route. Retrieval and the learned stage run on a small thread pool (the event loop only parses and
writes), the LLM stage on one worker behind a bounded queue (:mod:`.gate`). Results are the
``recommend --json`` document (:class:`~mediarec.rank.result.RecommendationResult`); requests name
the same things as ``mediarec recommend`` (user, history, query, k).

Errors are JSON ``{"error": ...}`` with a 4xx status; they never echo a key or a path of this
machine (paths of ``$MEDIAREC_HOME`` in a result read ``$MEDIAREC_HOME``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Path as PathParam, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.datastructures import Headers

from mediarec.catalog.model import Interaction, Item
from mediarec.errors import MediarecError, UnknownItemError, UnknownUserError
from mediarec.rank.result import RecommendationResult
from mediarec.serve.events import EventLog
from mediarec.serve.gate import Full, LLMGate, RateLimiter
from mediarec.serve.keys import KeyChecker, KeyStore

log = logging.getLogger(__name__)

MAX_K = 100
MAX_BODY = 64 * 1024  # bytes: a request, a history of hundreds of titles or a batch of 1,000 events fits
BODY_TIMEOUT = 10.0  # seconds a client may take between two parts of its body
OVERLOAD_REASON = "the LLM queue is full ({} requests): the retrieval and learned ranking, without the LLM"
FUTURE_SKEW = 60.0  # seconds a client's clock may run ahead (the loader allows a day: stricter here)
OPEN_PATHS = {"/healthz", "/", "/docs", "/openapi.json", "/docs/oauth2-redirect"}  # no data behind them


# -- what is asked --------------------------------------------------------------------------------
class RecommendRequest(BaseModel):
    """What ``mediarec recommend`` takes (``--user``, ``--history``, ``--query``, ``-k``), plus how to
    answer when the LLM queue is full."""

    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(None, min_length=1, max_length=200, description="a user id of the catalog")
    history: list[str] = Field(default_factory=list, max_length=500, description="titles or ids, oldest first")
    query: str | None = Field(None, max_length=2000, description="a free-text request")
    k: int = Field(10, ge=1, le=MAX_K, description="how many items")
    exclude: list[str] = Field(default_factory=list, max_length=2000, description="item ids never to show")
    llm: bool = Field(True, description="rank with the LLM stage when the server has one")
    explain: bool = Field(True, description="write a checked reason per item")
    on_overload: Literal["reject", "degrade"] = Field(
        "reject", description="LLM queue full: 429 with Retry-After (reject), or the retrieval list marked degraded")


class Event(BaseModel):
    """One piece of feedback: what ``chat --save-feedback`` records, as the feedback log stores it."""

    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=200)
    item: str = Field(min_length=1, max_length=200)
    event: Literal["watch", "play", "like", "dislike", "rating"]
    rating: float | None = Field(None, ge=0, le=100)
    weight: float | None = Field(None, ge=0, le=1e9, description="a watch's or play's strength: seconds watched, "
                                 "or plays (default 1); where most carry one, it weighs the item in the user's history")
    timestamp: float | None = Field(None, ge=0, description="seconds since the epoch (default: now)")

    @model_validator(mode="after")
    def _rating(self) -> "Event":
        """What every later load of the catalog accepts (:mod:`mediarec.catalog.validate`), checked before
        the event is written: a line the loader refuses would break the catalog's next load."""
        if (self.event == "rating") != (self.rating is not None):
            raise ValueError("a rating event carries a rating, and only a rating event does")
        if self.weight is not None and self.event not in ("watch", "play"):
            raise ValueError("only a watch or play event carries a weight (plays, or seconds watched)")
        if not self.user.strip() or not self.item.strip():
            raise ValueError("empty user or item id")
        if self.timestamp is not None and self.timestamp > time.time() + FUTURE_SKEW:
            raise ValueError("the timestamp is in the future")
        return self


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[Event] = Field(min_length=1, max_length=1000)


class Written(BaseModel):
    written: int = Field(description="events written and fsync'd before this answer")
    durable: bool = True


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1, max_length=2000)
    user: str | None = Field(None, min_length=1, max_length=200, description="whose history the session starts from")
    k: int = Field(10, ge=1, le=MAX_K, description="how many items the session's lists hold (set by its first message)")
    on_overload: Literal["reject", "degrade"] = Field(
        "reject", description="LLM queue full: 429 with Retry-After (reject), or this turn without the LLM, marked degraded")


# -- the service ----------------------------------------------------------------------------------
class Service:
    """What the routes share: the recommender, the event log, the keys, the queues."""

    def __init__(self, rec: Any, home: Path, *, llm_depth: int = 4, workers: int = 2, auth: bool = True,
                 max_sessions: int = 256, registered_feedback: Path | None = None, shared: bool = False,
                 log_start: int = 0):
        self.rec = rec
        self.home = Path(home)
        self.events = EventLog(rec.catalog.name, self.home, registered_feedback, shared=shared, start=log_start)
        self.keystore = KeyStore(self.home)
        self.auth = auth
        self._keys: tuple[float, KeyChecker] | None = None
        self.limiter = RateLimiter()
        self.gate = LLMGate(llm_depth)
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="mediarec-fast")
        self.sessions: OrderedDict[str, Any] = OrderedDict()
        self.max_sessions = max_sessions
        self._closing = threading.Event()
        self._refitter: threading.Thread | None = None
        self._refit_lock = threading.Lock()
        self.refits, self.refit_seconds = 0, 0.0
        self._home_strings = {json.dumps(str(self.home))[1:-1], json.dumps(str(self.home.resolve()))[1:-1]}

    @property
    def has_llm(self) -> bool:
        return self.rec.reranker is not None

    def fast(self) -> Any:
        """The same recommender without its LLM stage: retrieval and the learned stage (template reasons)."""
        if not self.has_llm:
            return self.rec
        view = copy.copy(self.rec)
        view.reranker, view.llm = None, None
        return view

    def keys(self) -> KeyChecker:
        """The keys as stored now (re-read when the file changes: a revoke holds at once)."""
        try:
            mtime = self.keystore.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = -1
        if self._keys is None or self._keys[0] != mtime:
            self._keys = (mtime, self.keystore.load() if mtime != -1 else KeyChecker({}))
        return self._keys[1]

    def public(self, text: str) -> str:
        """A JSON text with this machine's home path replaced (results carry model paths)."""
        for s in self._home_strings:
            text = text.replace(s, "$MEDIAREC_HOME")
        return text

    def start_refit(self, every: float) -> None:
        """For a catalog of your own: every ``every`` seconds, the events written meanwhile join the
        served catalog through :func:`mediarec.app.update.update` (the collaborative side refitted and
        the learned stage retrained beside the served ones, which answer until the new ones replace
        them in one step). Built-in datasets never refit on their events."""
        if every <= 0 or not self.events.own or self.events.shared or self._refitter is not None:
            return
        self._refitter = threading.Thread(target=self._refit_loop, args=(every,), name="mediarec-refit", daemon=True)
        self._refitter.start()

    def _refit_loop(self, every: float) -> None:
        while not self._closing.wait(every):
            self.refit_now()

    def refit_now(self) -> int:
        """Fold the pending events into the served catalog now; how many were folded in."""
        from mediarec.app.update import update

        with self._refit_lock:
            rows = self.events.pending()
            if not rows:
                return 0
            t0 = time.perf_counter()
            try:
                update(self.rec, interactions=rows, prune=True, collab="wait", learned="wait")
            except Exception:  # noqa: BLE001 - the served fit stays; the events stay pending and in the log
                log.exception("refit on %d events failed; the previous fit keeps serving", len(rows))
                return 0
            self.events.folded(rows)
            self.refits += 1
            self.refit_seconds = time.perf_counter() - t0
            return len(rows)

    def close(self) -> None:
        self._closing.set()
        self.gate.close()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _TooBig(Exception):
    pass


class _Slow(Exception):
    pass


class BodyGuard:
    """Refuses bodies over ``limit`` bytes (413) and clients that stall mid-body (408), before any
    route reads them, so neither holds a worker."""

    def __init__(self, app, limit: int = MAX_BODY, timeout: float = BODY_TIMEOUT):
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _send(send, 413, f"the body is over {self.limit} bytes")
        seen = 0
        started = False
        body_done = False

        async def guarded():
            nonlocal seen, body_done
            if body_done:  # afterwards a route waits here for the disconnect (a stream): no timeout
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), self.timeout)
            except asyncio.TimeoutError:
                raise _Slow() from None
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _TooBig()
                body_done = not msg.get("more_body", False)
            return msg

        async def watch(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, guarded, watch)
        except (_TooBig, _Slow) as e:
            if not started:
                if isinstance(e, _TooBig):
                    await _send(send, 413, f"the body is over {self.limit} bytes")
                else:
                    await _send(send, 408, "the body did not arrive in time")


async def _send(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class Access:
    """Keys, rate limits, metrics and the last-resort 500, as plain ASGI: Starlette's ``@middleware("http")``
    (BaseHTTPMiddleware) runs each request through a task group and memory streams, a cost every
    served request paid (benchmarks/serve_load.py)."""

    def __init__(self, app, service: "Service", requests: Any, seconds: Any):
        self.app, self.service, self.m_requests, self.m_seconds = app, service, requests, seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        service, path = self.service, scope["path"]
        state = scope.setdefault("state", {})
        if service.auth and path not in OPEN_PATHS:
            headers = Headers(scope=scope)
            presented = headers.get("x-api-key")
            auth = headers.get("authorization", "")
            if presented is None and auth[:7].lower() == "bearer ":
                presented = auth[7:].strip()
            key = service.keys().check(presented)
            if key is None:
                self.m_requests.labels("unauthorized", "401").inc()
                return await _error(401, "a valid API key is needed (Authorization: Bearer KEY; `mediarec keys add`)",
                                    {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            wait = service.limiter.take(key.id, key.rate)
            if wait > 0:
                self.m_requests.labels("rate_limited", "429").inc()
                return await _error(429, f"rate limit of this key ({key.rate:g} requests/s) reached",
                                    {"Retry-After": str(max(1, round(wait + 0.5)))})(scope, receive, send)
            state["key_id"] = key.id
        else:
            state["key_id"] = "open"
        status = [500, False]  # the status sent, whether a response started

        async def watch(msg):
            if msg["type"] == "http.response.start":
                status[0], status[1] = msg["status"], True
            await send(msg)

        try:
            await self.app(scope, receive, watch)
        except Exception:  # noqa: BLE001 - logged here, the client gets no internals
            log.exception("internal error on %s", path)
            status[0] = 500
            if not status[1]:
                await _error(500, "internal error (the server log has the details)")(scope, receive, send)
        route = getattr(scope.get("route"), "path", "unmatched")
        self.m_requests.labels(route, str(status[0])).inc()
        self.m_seconds.labels(route).observe(time.perf_counter() - t0)


def create_app(service: Service) -> FastAPI:
    """The FastAPI application over ``service`` (uvicorn serves it; tests call it in process too)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    registry = CollectorRegistry()
    m_requests = Counter("mediarec_requests", "HTTP requests answered", ["route", "status"], registry=registry)
    m_seconds = Histogram("mediarec_request_seconds", "time to answer, by route", ["route"], registry=registry,
                          buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
    m_events = Counter("mediarec_events_written", "feedback events written and fsync'd", registry=registry)
    m_overload = Counter("mediarec_llm_overload", "LLM requests that found the queue full", ["action"],
                         registry=registry)
    m_queue = Gauge("mediarec_llm_admitted", "LLM requests running or waiting", registry=registry)
    m_queue.set_function(lambda: service.gate.admitted)
    Gauge("mediarec_llm_queue_depth", "LLM requests admitted at most", registry=registry).set(service.gate.depth)
    Gauge("mediarec_catalog_items", "items served", registry=registry).set_function(
        lambda: len(service.rec.catalog.items))
    Gauge("mediarec_events_pending", "events written, not yet in the served fit", registry=registry).set_function(
        lambda: len(service.events.pending()))
    Gauge("mediarec_refits", "refits on events done by this process", registry=registry).set_function(
        lambda: service.refits)

    app = FastAPI(title="mediarec", version=_version(),
                  description="Recommendations for films, series and music: retrieval, a learned stage, an "
                              "optional LLM ranking with checked reasons. Send `Authorization: Bearer KEY` "
                              "(`mediarec keys add`).")
    app.state.service = service
    app.add_middleware(BodyGuard)

    app.add_middleware(Access, service=service, requests=m_requests, seconds=m_seconds)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "malformed JSON")
        # what was wrong and where, never the input itself (it may hold a key pasted by mistake)
        return JSONResponse({"error": "invalid request",
                             "details": [{"loc": [str(x) for x in e.get("loc", ())], "msg": e.get("msg", "")}
                                         for e in errors[:20]]}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    # -- routes -----------------------------------------------------------------------------
    @app.get("/healthz", summary="liveness (answers without a key)")
    async def healthz():
        return {"status": "ok"}

    @app.get("/metrics", summary="Prometheus text format", response_class=Response)
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/items/{item_id}", response_model=Item, summary="one item of the catalog")
    async def get_item(item_id: str = PathParam(max_length=200)):
        item = service.rec.catalog.items.get(item_id)
        if item is None:
            raise HTTPException(404, "unknown item")
        return item

    @app.post("/recommend", response_model=RecommendationResult,
              summary="a ranked, explained list (the document `mediarec recommend --json` prints)",
              responses={429: {"description": "rate limit, or the LLM queue is full (Retry-After)"}})
    async def recommend(body: RecommendRequest):
        args = _ask(service, body)
        use_llm = body.llm and service.has_llm
        if use_llm:
            try:
                fut = service.gate.submit(lambda: service.rec.recommend(**args))
            except Full as full:
                m_overload.labels(body.on_overload).inc()
                if body.on_overload == "reject":
                    return _error(429, "the LLM queue is full; retry later, or ask with \"on_overload\": "
                                       "\"degrade\" for the retrieval list", {"Retry-After": str(full.retry_after)})
                result = await _run_fast(service, args)
                result.degraded, result.degraded_reason = True, OVERLOAD_REASON.format(service.gate.depth)
                return _json(service, result)
            result = await _wrap(asyncio.wrap_future(fut))
        else:
            result = await _run_fast(service, args)
        return _json(service, result)

    @app.post("/events", response_model=Written, summary="feedback, acknowledged once fsync'd")
    async def post_events(body: EventBatch | Event):
        batch = body.events if isinstance(body, EventBatch) else [body]
        rows = _interactions(service, batch)
        loop = asyncio.get_running_loop()
        n = await loop.run_in_executor(None, service.events.append, rows)  # fsync off the event loop
        m_events.inc(n)
        return Written(written=n)

    @app.post("/chat/{session}", summary="one chat message; server-sent events: `list` (provisional, at once), "
                                        "`list` again as the LLM ranks, then `reply`",
              response_class=StreamingResponse)
    async def chat(body: ChatRequest, request: Request,
                   session: str = PathParam(pattern=r"^[A-Za-z0-9_-]{1,64}$")):
        sess = _session(service, f"{request.state.key_id}:{session}", body.user, body.k)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def push(kind: str | None, data: str | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, data))

        degrade = {"on": False}

        def mark(result: RecommendationResult | None) -> RecommendationResult | None:
            if result is not None and degrade["on"]:
                result.degraded, result.degraded_reason = True, OVERLOAD_REASON.format(service.gate.depth)
            return result

        def work() -> None:
            with sess.lock:
                saved = sess.chat.recommender
                if degrade["on"]:  # this turn only: retrieval and the learned stage
                    sess.chat.recommender = service.fast()
                sess.chat.on_update = lambda r: push("list", service.public(mark(r).model_dump_json()))
                try:
                    reply = sess.chat.send(body.message)
                    mark(reply.result)
                    push("reply", service.public(reply.model_dump_json()))
                except Exception:  # noqa: BLE001
                    log.exception("chat turn failed")
                    push("error", json.dumps({"error": "internal error"}))
                finally:
                    sess.chat.on_update = None
                    sess.chat.recommender = saved
                    push(None, None)

        if service.has_llm:
            try:
                service.gate.submit(work)
            except Full as full:
                m_overload.labels(body.on_overload).inc()
                if body.on_overload == "reject":
                    return _error(429, "the LLM queue is full; retry later, or send \"on_overload\": \"degrade\"",
                                  {"Retry-After": str(full.retry_after)})
                degrade["on"] = True
                service.pool.submit(work)
        else:
            service.pool.submit(work)

        async def stream():
            while True:
                kind, data = await queue.get()
                if kind is None:
                    return
                yield f"event: {kind}\ndata: {data}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(resources.files("mediarec.serve").joinpath("static/index.html").read_text("utf-8"))

    return app


# -- helpers --------------------------------------------------------------------------------------
def _version() -> str:
    from mediarec import __version__

    return __version__


def _ask(service: Service, body: RecommendRequest) -> dict[str, Any]:
    """The recommend() arguments; an unknown user (no catalog history, no events) is a 404."""
    catalog = service.rec.catalog
    history: list[Any] = []
    user = body.user
    if user is not None:
        extra = service.events.history(user)
        if user not in catalog.by_user:
            if not extra:
                raise HTTPException(404, "unknown user")
            user = None  # known through their events alone
        history += extra
    history += [h.strip() for h in body.history if h.strip()]
    if user is None and not history and not (body.query and body.query.strip()):
        raise HTTPException(422, "give a user, a history or a query")
    return dict(user=user, history=history, query=body.query, k=body.k, exclude=body.exclude, explain=body.explain)


async def _wrap(awaitable):
    try:
        return await awaitable
    except UnknownUserError:
        raise HTTPException(404, "unknown user") from None
    except UnknownItemError:
        raise HTTPException(404, "unknown item in the history or exclusions") from None
    except MediarecError as e:
        raise HTTPException(422, _first_line(str(e))) from None


def _first_line(text: str) -> str:
    """A user error's message without anything that looks like a path of this machine."""
    line = text.splitlines()[0] if text else "invalid request"
    return " ".join(w for w in line.split() if not (w.strip("'\"(),").startswith(("/", "~")) or os.sep + "." in w))


async def _run_fast(service: Service, args: dict[str, Any]) -> RecommendationResult:
    loop = asyncio.get_running_loop()
    rec = service.fast()
    return await _wrap(loop.run_in_executor(service.pool, lambda: rec.recommend(**args)))


def _json(service: Service, result: RecommendationResult) -> Response:
    return Response(service.public(result.model_dump_json()), media_type="application/json")


def _interactions(service: Service, batch: list[Event]) -> list[Interaction]:
    """The batch as interactions, all checked before any is written (all or nothing)."""
    from mediarec.catalog.forgotten import is_forgotten

    catalog = service.rec.catalog
    now = time.time()
    rows = []
    for n, e in enumerate(batch):
        if e.item.strip() not in catalog.items:
            raise HTTPException(404, f"events[{n}]: unknown item")
        if is_forgotten(e.user, catalog.name, service.home):
            raise HTTPException(409, f"events[{n}]: this user was forgotten in this catalog (`mediarec forget`); "
                                     "their events are not kept")
        rows.append(Interaction(user=e.user, item=e.item, event=e.event, rating=e.rating,
                                weight=e.weight if e.weight is not None else 1.0,
                                timestamp=e.timestamp if e.timestamp is not None else now))
    return rows


class _Session:
    def __init__(self, chat: Any):
        import threading

        self.chat = chat
        self.lock = threading.Lock()


def _session(service: Service, key: str, user: str | None, k: int) -> _Session:
    from mediarec.chat.session import ChatSession

    sess = service.sessions.get(key)
    if sess is not None:
        service.sessions.move_to_end(key)
        return sess
    if user is not None and user not in service.rec.catalog.by_user:
        raise HTTPException(404, "unknown user")
    rec = service.rec if service.has_llm else service.fast()
    sess = _Session(ChatSession(rec, user=user, k=k))
    if user is not None:
        sess.chat.interactions += service.events.history(user)
    service.sessions[key] = sess
    while len(service.sessions) > service.max_sessions:
        service.sessions.popitem(last=False)
    return sess
