"""``mediarec serve`` and ``mediarec keys``: building the service and running uvicorn."""

from __future__ import annotations

import ipaddress
import sys
from typing import Any

from mediarec.errors import MediarecError


def build_service(dataset: str, *, llm: str | None = None, data_dir: str | None = None,
                  chroma_url: str | None = None, llm_queue: int = 4, workers: int = 2, progress: bool = False,
                  auth: bool = True, refit_every: float = 0.0, shared: bool = False) -> Any:
    """The served recommender of ``dataset`` (:func:`mediarec.app.from_dataset`) wrapped as a service."""
    from mediarec.app import from_dataset
    from mediarec.catalog.own import registration
    from mediarec.config import get_settings
    from mediarec.serve.api import Service

    settings = get_settings(chroma_url=chroma_url)
    reg = registration(dataset, settings.home)
    start = reg.feedback_path.stat().st_size if reg is not None and reg.feedback_path.is_file() else 0
    rec = from_dataset(dataset, data_dir=data_dir, settings=settings, llm=llm, chroma_url=chroma_url,
                       progress=progress)
    reg = registration(dataset, settings.home)
    service = Service(rec, settings.home, llm_depth=llm_queue, workers=workers, auth=auth,
                      registered_feedback=reg.feedback_path if reg is not None else None, shared=shared,
                      log_start=start)
    service.start_refit(refit_every)
    return service


def run(args: Any) -> int:
    """``mediarec serve``: build, say where it listens, serve until interrupted."""
    import uvicorn

    from mediarec.serve.api import create_app

    if args.port < 0 or args.port > 65535:
        raise MediarecError("--port must be from 0 to 65535")
    if args.llm_queue < 1 or args.workers < 1 or args.processes < 1:
        raise MediarecError("--llm-queue, --workers and --processes must be at least 1")
    _check_bind(args.host, args.port)  # before minutes of loading, not after
    if args.processes > 1:
        return _run_processes(args)
    service = build_service(args.dataset, llm=args.llm, data_dir=args.data_dir, chroma_url=args.chroma_url,
                            llm_queue=args.llm_queue, workers=args.workers, progress=False,
                            refit_every=args.refit_every)
    keys = [k for k in service.keystore.list() if k.revoked is None]
    if not keys:
        print("warning: no API keys, so only /healthz answers; create one with `mediarec keys add --name APP`",
              file=sys.stderr)
    if not _loopback(args.host):
        print(f"note: listening on {args.host}, beyond this machine; every route but /healthz needs a key",
              file=sys.stderr)
    rec = service.rec
    print(f"serving {rec.catalog.name} ({len(rec.catalog.items):,} items; LLM: "
          f"{rec.llm.spec if rec.llm else 'none'}; events: "
          f"{'the catalog feedback log' if service.events.own else 'the server event log'}) on "
          f"http://{args.host}:{args.port}", flush=True)
    try:
        uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="warning", access_log=False,
                    timeout_keep_alive=5, timeout_graceful_shutdown=5)
    finally:
        service.close()
        rec.close()
    return 0


_CONFIG_ENV = "MEDIAREC_SERVE_CONFIG"


def _run_processes(args: Any) -> int:
    """``--processes N``: N uvicorn worker processes on one socket, each with its own recommender (one
    Python process answers with one core at a time: the GIL). The event log is shared (each process
    tails it); chat sessions, rate limits and the LLM queue are per process; no in-server refit."""
    import json
    import os

    import uvicorn

    from mediarec.serve.keys import KeyStore
    from mediarec.config import get_settings

    os.environ[_CONFIG_ENV] = json.dumps({k: getattr(args, k) for k in (
        "dataset", "llm", "data_dir", "chroma_url", "llm_queue", "workers")})
    if not [k for k in KeyStore(get_settings().home).list() if k.revoked is None]:
        print("warning: no API keys, so only /healthz answers; create one with `mediarec keys add --name APP`",
              file=sys.stderr)
    print(f"serving {args.dataset} with {args.processes} processes on http://{args.host}:{args.port} "
          "(each loads the catalog; /healthz answers once one has)", flush=True)
    uvicorn.run("mediarec.serve.server:worker_app", factory=True, workers=args.processes, host=args.host,
                port=args.port, log_level="warning", access_log=False, timeout_keep_alive=5,
                timeout_graceful_shutdown=5)
    return 0


def worker_app() -> Any:
    """The application of one ``--processes`` worker (uvicorn calls it in each process)."""
    import json
    import os

    from mediarec.serve.api import create_app

    cfg = json.loads(os.environ[_CONFIG_ENV])
    service = build_service(cfg["dataset"], llm=cfg["llm"], data_dir=cfg["data_dir"], chroma_url=cfg["chroma_url"],
                            llm_queue=cfg["llm_queue"], workers=cfg["workers"], shared=True)
    return create_app(service)


def _check_bind(host: str, port: int) -> None:
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise MediarecError(f"--host {host!r} is not an address of this machine") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as e:
            raise MediarecError(f"cannot listen on {host}:{port} ({e.strerror or e}); is another server there? "
                                "Give another --port") from None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def keys(args: Any) -> int:
    """``mediarec keys add/list/revoke``: the key is printed once, at creation, and stored hashed."""
    from mediarec.config import get_settings
    from mediarec.serve.keys import KeyStore

    store = KeyStore(get_settings().home)
    if args.action == "add":
        if args.id:
            raise MediarecError("`keys add` takes --name, not an id")
        rec, key = store.add(args.name or "", rate=args.rate)
        print(key)
        print(f"key {rec.id} ({rec.name}, {rec.rate:g} requests/s) added; it is shown this once, and stored "
              "hashed", file=sys.stderr)
    elif args.action == "list":
        rows = store.list()
        for r in rows:
            state = "revoked" if r.revoked else "active"
            print(f"{r.id}  {state:8}  {r.rate:g}/s  {r.name}")
        print(f"{len(rows)} key(s)", file=sys.stderr)
    else:
        if not args.id:
            raise MediarecError("give the id of the key to revoke (`mediarec keys list` shows them)")
        r = store.revoke(args.id)
        print(f"key {r.id} ({r.name}) revoked")
    return 0
