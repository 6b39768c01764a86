"""Forgetting a person in one catalog: ``mediarec forget --dataset NAME --user ID`` (or ``--all-catalogs``).

A user id names a person within one catalog only (the demo's ``u02`` is not your catalog's ``u02``),
so forgetting is scoped: the person's rows leave every load of that catalog
(:mod:`mediarec.catalog.forgotten`, a salted digest, never the id), and only that catalog's files and
models are rewritten or deleted. Other catalogs are not read for writing, nor touched.
``--all-catalogs`` is the explicit "everywhere": every registered catalog and built-in dataset
holding the id, and any catalog loaded later.

An id the catalog does not hold is an error and nothing is written. A forget killed at any point is
finished by running it again: the person is left out of every load from its first write on.
What :func:`forget_user` removes is in its docstring and in the lines it returns.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from mediarec.catalog.forgotten import (
    ALL,
    entry,
    home_or_default,
    mark_clean,
    remember_forgotten,
    scope_of,
)
from mediarec.config import get_settings
from mediarec.errors import MediarecError
from mediarec.infra.atomic import atomic_write_text
from mediarec.infra.paths import Layout, safe_collection_prefix, safe_file_name


@dataclass
class _Target:
    """One catalog the forget applies to, as its files hold it (forgotten rows included)."""

    name: str
    reg: object | None          # the Registration of a catalog of your own; None for a built-in one
    users: int                  # how many people its files hold
    rows: int                   # the person's rows in its files
    prior: dict | None          # the person's entry there from an earlier forget
    served: int = 0             # their rows in the events `mediarec serve` took for a built-in dataset


# -- the command --------------------------------------------------------------------------------
def forget_user(user: str, dataset: str | None = None, all_catalogs: bool = False, home: Path | None = None,
                data_dir: Path | None = None, chroma_url: str | None = None) -> list[str]:
    """Forget ``user`` in catalog ``dataset`` (or, ``all_catalogs``, in every one); return what was removed.

    * ``events``: every later load of the catalog leaves their interactions out (a salted digest);
      the interaction files mediarec wrote for a catalog of your own (the chat feedback log, the copies
      ``mediarec add`` keeps) are rewritten without their rows, atomically; files you registered and
      the publisher's are not rewritten (the lines name them and their rows);
    * ``models`` and ``indexes``: what was fitted on them is deleted (the item-item matrices and
      collaborative collections, evaluation indexes' included, and the learned second-stage models)
      of that catalog only; the next command that needs them rebuilds them without the person; a
      collaborative refit pending in the background (``mediarec add``) is called off;
    * ``files``: saved chat sessions under ``$MEDIAREC_HOME`` of that catalog and user are deleted,
      lines naming them leave that catalog's chat line history, and that catalog's LLM answers are
      cleared (answers are keyed by prompt, and a prompt carries a history); other catalogs' stay;
    * finally the catalog's files under ``$MEDIAREC_HOME`` are searched for the id; what still holds
      it is reported, never hidden.

    Raises :class:`MediarecError` (nothing written) when no catalog in scope holds ``user``.
    """
    home = home_or_default(home)
    user = str(user).strip()
    if not user:
        raise MediarecError("--user must name someone")
    if (dataset is None) == (not all_catalogs):
        raise MediarecError("say where to forget: --dataset NAME (that catalog only) or --all-catalogs")
    targets, notes = _targets(user, dataset, home, data_dir)
    known = [t for t in targets if t.rows or t.served or t.prior is not None]
    if not known:
        where = f"in catalog {targets[0].name!r} ({targets[0].users} users)" if dataset is not None else \
            f"in any catalog ({', '.join(t.name for t in targets) or 'none found'})"
        raise MediarecError(f"unknown user {user!r} {where}; nothing was forgotten or deleted"
                            + (f" ({'; '.join(notes)})" if notes else ""))
    report: list[str] = []
    remember_forgotten(user, ALL if all_catalogs else known[0].name, home)  # first: a kill leaves them out
    for t in known:
        report.append(f"forgot {user} in {t.name}: {t.rows} event(s) in its files"
                      + ("" if t.prior is None else " (readmitted after an earlier forget)" if t.prior["readmitted"]
                         else " (forgotten there before; checked again)"))
        report += _forget_events(user, t, home)
    report.append(f"events: every load of {'every catalog' if all_catalogs else known[0].name} leaves {user}'s "
                  f"interactions out from now on ({Layout(home).forgotten}, a salted digest)")
    for t in known:
        report += _delete_models(t.name, home, chroma_url)
        report += _call_off_pending_refit(t.name, home, chroma_url)
    report += _forget_sessions(user, home, None if all_catalogs else {t.name for t in known})
    report += _clear_answer_cache(home, None if all_catalogs else {t.name for t in known})
    mark_clean(user, ALL if all_catalogs else known[0].name, home)
    left = [p for t in known for p in _still_holding(user, home, t.name)]
    report += [f"left: still holds the id: {p}" for p in left] or \
        [f"left: no file of {', '.join(t.name for t in known)} under {home} holds {user!r} any more"]
    if not all_catalogs:
        others = _others_holding(user, known[0].name, home, data_dir)
        if others:
            report.append(f"other catalogs: not touched; {', '.join(others)} also hold(s) a user {user!r}, another "
                          "person there (`--dataset NAME` or `--all-catalogs` forgets there)")
    return report


def _raw(name: str, home: Path, data_dir: Path | None):
    """Catalog ``name`` as its files hold it, forgotten rows included, and its registration (or None)."""
    from mediarec.catalog.own import load_registered, registration
    from mediarec.catalog.registry import (
        DATASETS,
        _builtin,
        dataset_path,
        resolve_dataset_name,
    )

    if not _builtin(name):
        reg = registration(name, home)
        if reg is not None:
            return load_registered(reg, forgotten=False), reg
    info = DATASETS[resolve_dataset_name(name).name]  # an unknown name: the error lists the known ones
    return (info.loader(dataset_path(info.name, data_dir)) if info.folder else info.loader()), None


def _target(user: str, name: str, home: Path, data_dir: Path | None) -> _Target:
    catalog, reg = _raw(name, home, data_dir)
    name = scope_of(catalog.name) if reg is None else reg.name
    served = Layout(home).served_events(name)
    return _Target(name, reg, len(catalog.by_user), len(catalog.by_user.get(user, ())), entry(user, name, home),
                   served=_rows_of(served, user) if reg is None and served.is_file() else 0)


def _targets(user: str, dataset: str | None, home: Path, data_dir: Path | None) -> tuple[list[_Target], list[str]]:
    from mediarec.catalog.own import registered_names
    from mediarec.catalog.registry import DATASETS

    if dataset is not None:
        return [_target(user, dataset, home, data_dir)], []
    out, notes = [], []
    for name in [*registered_names(home), *DATASETS]:
        try:
            out.append(_target(user, name, home, data_dir))
        except MediarecError as e:
            if _has_models(name, home):
                notes.append(f"{name} could not be read: {e}")
    if notes:  # models built on data that cannot be checked now: everything stops, nothing is guessed
        raise MediarecError(f"--all-catalogs needs every catalog with models under {home} readable: "
                            + "; ".join(notes) + " (give --data-dir, or forget per catalog with --dataset)")
    return out, notes


def _forget_events(user: str, t: _Target, home: Path) -> list[str]:
    """Rewrite the files mediarec wrote without the person's rows; name the others that hold them."""
    if t.reg is None:
        out = [(f"events: {t.name}: the publisher's files hold {t.rows} row(s) of {user}; they are not rewritten "
                "(left out from now on)")] if t.rows else []
        if t.served:
            path = Layout(home).served_events(t.name)
            _rewrite_without(path, user)
            out.append(f"events: {t.name}: removed {t.served} row(s) of {user} from {path} (posted to `mediarec "
                       "serve`; a server running now still holds them until it restarts)")
        return out
    out = []
    for path in t.reg.interaction_files() if t.reg is not None else ():
        n = _rows_of(path, user)
        if not n:
            continue
        if t.reg.owned_by_mediarec(path):
            _rewrite_without(path, user)
            out.append(f"events: {t.name}: removed {n} row(s) of {user} from {path}")
        else:
            out.append(f"events: {t.name}: your file {path} still holds {n} row(s) of {user}; it is yours and was "
                       "not rewritten; they are left out from now on (delete them there too)")
    return out


def _others_holding(user: str, name: str, home: Path, data_dir: Path | None) -> list[str]:
    """Other catalogs whose files hold the same id (read only; a note for the user)."""
    from mediarec.catalog.own import registered_names
    from mediarec.catalog.registry import DATASETS

    out = []
    for other in [*registered_names(home), *DATASETS]:
        if other == name:
            continue
        try:
            catalog, _ = _raw(other, home, data_dir)
        except MediarecError:
            continue
        if user in catalog.by_user:
            out.append(other)
    return out


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


def _model_files(name: str, home: Path) -> list[Path]:
    safe = safe_file_name(name)
    learned = [p for p in Layout(home).learned.glob(f"{safe}-*.json")
               if len(p.stem) == len(safe) + 25 and all(c in "0123456789abcdef" for c in p.stem[-24:])]
    matrices = [p for d in _index_dirs(name, home) for p in d.glob("*-collab*.npz")]
    return learned + matrices


def _index_dirs(name: str, home: Path) -> list[Path]:
    return [d for d in Layout(home).index_dirs(name) if d.is_dir()]


def _has_models(name: str, home: Path) -> bool:
    return bool(_index_dirs(name, home) or _model_files(name, home))


def _collab_collection(cname: str, name: str) -> bool:
    """Whether Chroma collection ``cname`` is a collaborative one of catalog ``name`` (its own index
    or its evaluation's): on a Chroma server every catalog's collections are listed together."""
    prefix = re.escape(safe_collection_prefix(name))
    evals = "|".join(re.escape(safe_collection_prefix(f"{name}{s}")) for s in ("-eval", "-eval-enriched"))
    return re.fullmatch(rf"(?:{prefix}|{evals})-c[bq][0-9a-f]{{6}}", cname) is not None


def _delete_models(name: str, home: Path, chroma_url: str | None) -> list[str]:
    from mediarec.index.store import build_lock, make_client

    out = []
    for path in _model_files(name, home):
        path.unlink(missing_ok=True)
        what = "the learned second stage" if path.suffix == ".json" else "an item-item matrix"
        out.append(f"models: {name}: deleted {path} ({what})")
    settings = get_settings(home=home, chroma_url=chroma_url)
    folders = [d.name for d in _index_dirs(name, home)] if not (chroma_url or settings.chroma_url) else \
        [name, f"{name}-eval", f"{name}-eval-enriched"]
    for folder in folders:
        with build_lock(settings, folder, chroma_url):
            client = make_client(settings, folder, chroma_url)
            for col in client.list_collections():
                cname = col if isinstance(col, str) else col.name
                if _collab_collection(cname, name):  # the items' text collection is fitted on nobody
                    client.delete_collection(cname)
                    out.append(f"indexes: {name}: deleted the collaborative collection {cname}")
    if out:
        out.append(f"models: {name}: rebuilt without the person by the next `mediarec index` or recommend")
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
    return [(f"models: {name}: the previous collaborative fit that served while a refit was pending held the "
             "person's interactions and is gone; the next command fits without them")]


def _forget_sessions(user: str, home: Path, catalogs: set[str] | None) -> list[str]:
    """Saved chat sessions of ``user`` (or holding their interactions) in ``catalogs`` (None: any)."""
    out = []
    for path in home.rglob("*.json"):
        if path.is_symlink() or "models" in path.relative_to(home).parts[:1]:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and "turns" in data and "interactions" in data and (
                catalogs is None or scope_of(str(data.get("catalog"))) in catalogs) and (
                data.get("user") == user or any(isinstance(x, dict) and x.get("user") == user
                                                for x in data.get("interactions") or [])):
            path.unlink()
            out.append(f"files: deleted the saved chat session {path}")
    lay = Layout(home)
    histories = sorted(lay.chat.glob("*.history")) if catalogs is None and lay.chat.is_dir() else \
        [lay.chat_history(name) for name in sorted(catalogs or ())]
    for hist in [*histories, lay.legacy_chat_history]:
        if hist.is_file():
            lines = hist.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
            kept = [ln for ln in lines if not _mentions(ln.encode(), user)]
            if len(kept) != len(lines):
                atomic_write_text(hist, "".join(kept), private=True)
                out.append(f"files: removed {len(lines) - len(kept)} line(s) naming {user} from the chat's line "
                           f"history {hist}")
    return out


def _clear_answer_cache(home: Path, catalogs: set[str] | None) -> list[str]:
    """The LLM answers of ``catalogs`` (None: all): answers are keyed by prompt, and a prompt may
    carry the person's history. Other catalogs' answers stay; answers written before the cache was
    kept per catalog (and those of no catalog) cannot be told apart, so they go too."""
    import shutil

    lay = Layout(home)
    roots = [lay.llm_cache] if catalogs is None else \
        [*(lay.llm_cache_of(name) for name in sorted(catalogs)), *lay.legacy_llm_caches()]
    out = []
    for root in roots:
        n = sum(1 for _ in root.rglob("*.json")) if root.is_dir() else 0
        if n:
            shutil.rmtree(root)
            out.append(f"files: cleared the LLM answer cache {root} ({n} answers): answers are keyed by prompt, "
                       "and a prompt may carry the person's history")
    return out


def _mentions(data: bytes, user: str) -> bool:
    return re.search(rb"(?<![A-Za-z0-9_.-])" + re.escape(user.encode()) + rb"(?![A-Za-z0-9_.-])", data) is not None


def _catalog_paths(name: str, home: Path) -> list[Path]:
    """What ``$MEDIAREC_HOME`` keeps for catalog ``name``: its registration folder, indexes,
    learned models, tuned choices and summaries (other catalogs' files are not among them)."""
    lay = Layout(home)
    tuned = [p for p in lay.tuned.glob(f"{safe_file_name(name)}*.json")
             if p.stem == safe_file_name(name) or p.stem.startswith(f"{safe_file_name(name)}@")]
    return [lay.catalogs / name, lay.served_events(name).parent, *_index_dirs(name, home), *_model_files(name, home), *tuned,
            lay.summaries(name), lay.chat_history(name), lay.llm_cache_of(name), lay.legacy_chat_history,
            *lay.legacy_llm_caches()]


def _still_holding(user: str, home: Path, name: str) -> list[Path]:
    """Files of catalog ``name`` under ``home`` (and the home's chat history and answer cache) in which the id still
    appears as a word. Symlinks are not followed."""
    import os

    hits = []
    for top in _catalog_paths(name, home):
        walk = [(str(top.parent), [], [top.name])] if top.is_file() else os.walk(top) if top.is_dir() else []
        for root, _dirs, files in walk:
            for f in files:
                p = Path(root) / f
                try:
                    if not p.is_symlink() and _mentions(p.read_bytes(), user):
                        hits.append(p)
                except OSError:
                    continue
    return hits
