"""Forgetting a person: ``mediarec forget --user ID``.

The interactions of a forgotten user are dropped by every catalog load (:func:`drop_forgotten`), so
no index, collaborative model, learned model or evaluation sees them again. Files you registered
are yours and are not rewritten; the list of forgotten people that makes every load skip their
rows holds salted sha256 digests (``$MEDIAREC_HOME/forgotten.json``), never the ids themselves.
What :func:`forget_user` removes is in its docstring and in the report it returns.
"""

from __future__ import annotations

import json
from pathlib import Path

from mediarec.catalog.forgotten import home_or_default, remember_forgotten
from mediarec.infra.paths import Layout
from mediarec.config import get_settings
from mediarec.infra.atomic import atomic_write_text

# -- the command --------------------------------------------------------------------------------
def forget_user(user: str, home: Path | None = None, data_dir: Path | None = None,
                chroma_url: str | None = None) -> list[str]:
    """Remove ``user``'s interactions from everything mediarec keeps, and say what was removed.

    * every later load leaves them out (:func:`remember_forgotten`; a salted digest, not the id);
    * the interaction files mediarec wrote for a registered catalog (the chat feedback log, the
      copies ``mediarec add`` keeps) are rewritten without their rows, atomically; files you
      registered are yours and are not rewritten (the report names them and their rows);
    * the models fitted on them are deleted (collaborative vectors and matrices, learned
      second-stage models, evaluation indexes' collaborative side) of every catalog that held them
      or could not be checked; they are rebuilt without the person by the next command that needs them;
      a collaborative refit pending in the background (``mediarec add``) is called off, since the
      previous fit it lets serve was fitted with them: the next opening fits without them;
    * saved chat sessions under ``$MEDIAREC_HOME`` of that user or holding their interactions are
      deleted, and lines naming them leave the chat's line history;
    * the LLM answer cache is cleared: answers are keyed by prompt, and a prompt carries a history;
    * finally every file under ``$MEDIAREC_HOME`` (models aside) is searched for the id; what still
      holds it is reported, never hidden.
    """
    from mediarec.catalog.own import load_registered, registered_names, registration

    home = home_or_default(home)
    user = str(user)
    report: list[str] = []
    affected: list[str] = []
    for name in registered_names(home):
        reg = registration(name, home)
        try:
            holds = user in load_registered(reg).by_user
        except Exception as e:  # noqa: BLE001 - an unreadable catalog: its models go, to be safe
            report.append(f"{name}: could not be read ({e}); its models are deleted to be safe")
            affected.append(name)
            continue
        if not holds:
            continue
        affected.append(name)
        for path in reg.interaction_files():
            n = _rows_of(path, user)
            if not n:
                continue
            if reg.owned_by_mediarec(path):
                _rewrite_without(path, user)
                report.append(f"{name}: removed {n} interaction(s) from {path}")
            else:
                report.append(f"{name}: your file {path} still holds {n} row(s) of {user}; it is yours and "
                              "was not rewritten; mediarec leaves them out from now on (delete them there too)")
    affected += _builtin_holding(user, home, data_dir, report)
    remember_forgotten(user, home)
    report.append(f"every catalog load now leaves {user}'s interactions out ({Layout(home).forgotten}, a salted digest)")
    for name in affected:
        report += _delete_models(name, home, chroma_url)
        report += _call_off_pending_refit(name, home, chroma_url)
    report += _forget_sessions(user, home)
    report += _clear_answer_cache(home)
    left = _still_holding(user, home)
    report += [f"still holds the id: {p}" for p in left] or [f"no file under {home} holds {user!r} any more"]
    return report


def _rows_of(path: Path, user: str) -> int:
    from mediarec.catalog.loaders.generic import load_interactions

    class _Any(dict):
        def __contains__(self, key):  # every item id counts: only the user column matters here
            return True

    return sum(x.user == user for x in load_interactions(path, _Any()))


def _rewrite_without(path: Path, user: str) -> None:
    """The same file (same format) without ``user``'s rows, replaced atomically."""
    from mediarec.catalog.loaders.generic import _generic_records
    from mediarec.infra.atomic import atomic_open

    rows = path.read_text(encoding="utf-8").splitlines(keepends=True)
    drop = {n for n, rec, _ in _generic_records(path, "interactions", ("user", "item"))
            if str(rec.get("user", "")).strip() == user}
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.writelines(ln for n, ln in enumerate(rows, 1) if n not in drop)


def _builtin_holding(user: str, home: Path, data_dir: Path | None, report: list[str]) -> list[str]:
    """The built-in datasets with models under ``home`` whose data holds ``user`` (or cannot be read)."""
    from mediarec.catalog.registry import DATASETS
    from mediarec.errors import MediarecError

    out = []
    for info in DATASETS.values():
        if not _has_models(info.name, home):
            continue
        try:
            from mediarec.catalog.registry import dataset_path

            catalog = info.loader(dataset_path(info.name, data_dir)) if info.folder else info.loader()
        except MediarecError:
            report.append(f"{info.name}: its data was not found to check; its models are deleted to be safe")
            out.append(info.name)
            continue
        if user in catalog.by_user:
            n = len(catalog.by_user[user])
            report.append(f"{info.name}: the publisher's files hold {n} row(s) of {user}; they are not rewritten "
                          "(mediarec leaves them out from now on)")
            out.append(info.name)
    return out


def _model_files(name: str, home: Path) -> list[Path]:
    from mediarec.infra.paths import safe_file_name

    safe = safe_file_name(name)
    learned = [p for p in Layout(home).learned.glob(f"{safe}-*.json")
               if len(p.stem) == len(safe) + 25 and all(c in "0123456789abcdef" for c in p.stem[-24:])]
    matrices = [p for d in _index_dirs(name, home) for p in d.glob("*-collab*.npz")]
    return learned + matrices


def _index_dirs(name: str, home: Path) -> list[Path]:
    return [d for d in Layout(home).index_dirs(name) if d.is_dir()]


def _has_models(name: str, home: Path) -> bool:
    return bool(_index_dirs(name, home) or _model_files(name, home))


def _delete_models(name: str, home: Path, chroma_url: str | None) -> list[str]:
    from mediarec.index.store import build_lock, make_client

    out = []
    for path in _model_files(name, home):
        path.unlink(missing_ok=True)
        out.append(f"{name}: deleted {path}")
    settings = get_settings(home=home, chroma_url=chroma_url)
    folders = [d.name for d in _index_dirs(name, home)] if not (chroma_url or settings.chroma_url) else \
        [name, f"{name}-eval", f"{name}-eval-enriched"]
    for folder in folders:
        with build_lock(settings, folder, chroma_url):
            client = make_client(settings, folder, chroma_url)
            for col in client.list_collections():
                cname = col if isinstance(col, str) else col.name
                if not cname.endswith("-text"):  # every collection but the items' text is fitted on people
                    client.delete_collection(cname)
                    out.append(f"{name}: deleted the collaborative collection {cname}")
    if out:
        out.append(f"{name}: its models are rebuilt without the person by the next `mediarec index` or recommend")
    return out


def _call_off_pending_refit(name: str, home: Path, chroma_url: str | None) -> list[str]:
    """Clear the registration's pending-refit marker (:mod:`mediarec.index.pending`), under the
    index's build lock so that a background refit's switch sees it."""
    from mediarec.catalog.own import registration
    from mediarec.index.store import build_lock

    reg = registration(name, home)
    if reg is None or not reg.collab_pending:
        return []
    with build_lock(get_settings(home=home, chroma_url=chroma_url), name, chroma_url):
        reg = registration(name, home)
        if reg is None or not reg.collab_pending:
            return []
        reg.collab_pending = None
        reg.save()
    return [f"{name}: the previous collaborative fit that served while a refit was pending held the person's "
            "interactions and is gone; the next command fits without them"]


def _forget_sessions(user: str, home: Path) -> list[str]:
    out = []
    for path in home.rglob("*.json"):
        if path.is_symlink() or "models" in path.relative_to(home).parts[:1]:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and "turns" in data and "interactions" in data and (
                data.get("user") == user or any(isinstance(x, dict) and x.get("user") == user
                                                for x in data.get("interactions") or [])):
            path.unlink()
            out.append(f"deleted the saved chat session {path}")
    hist = Layout(home).chat_history
    if hist.is_file():
        lines = hist.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        kept = [ln for ln in lines if not _mentions(ln.encode(), user)]
        if len(kept) != len(lines):
            atomic_write_text(hist, "".join(kept), private=True)
            out.append(f"removed {len(lines) - len(kept)} line(s) naming {user} from {hist}")
    return out


def _clear_answer_cache(home: Path) -> list[str]:
    import shutil

    root = Layout(home).llm_cache
    n = sum(1 for _ in root.rglob("*.json")) if root.is_dir() else 0
    if n:
        shutil.rmtree(root)
        return [f"cleared the LLM answer cache ({n} answers in {root}): answers are keyed by prompt, "
                "and a prompt may carry the person's history"]
    return []


def _mentions(data: bytes, user: str) -> bool:
    import re

    return re.search(rb"(?<![A-Za-z0-9_.-])" + re.escape(user.encode()) + rb"(?![A-Za-z0-9_.-])", data) is not None


def _still_holding(user: str, home: Path) -> list[Path]:
    """Files under ``home`` (the models folder aside) in which the id still appears as a word."""
    import os

    hits = []
    for root, dirs, files in os.walk(home):  # symlinks (the shared models folder) are not followed
        dirs[:] = [d for d in dirs if not (Path(root) == home and d == "models")]
        for f in files:
            p = Path(root) / f
            try:
                if not p.is_symlink() and _mentions(p.read_bytes(), user):
                    hits.append(p)
            except OSError:
                continue
    return hits
