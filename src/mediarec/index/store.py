"""The ChromaDB index of a catalog: one collection of text embeddings, two of collaborative vectors.

* ``<prefix>-text``: MiniLM embeddings of each item's text (cosine space, with our embedding
  function attached so free-text queries work). Depends on the items only.
* ``<prefix>-collab``: item-side collaborative vectors (inner-product space).
* ``<prefix>-collabq``: query-side collaborative vectors; a user's query vector is built from them.
* ``<prefix>-collab-exact.npz`` (a file beside the collections, :attr:`CatalogIndex.matrix_path`):
  the exact item-item matrix those vectors factorise, which the ranking uses (see
  :mod:`mediarec.index.collab`), stored with the collab fingerprint and written atomically. A
  missing, stale or corrupt file is refitted by a build; a reader (``build=False``) gets an
  :class:`IndexError_` saying to run ``mediarec index``. Against a Chroma server there is no local
  folder that other machines see, so the server stays the only state: the matrix is fitted again
  in memory when the index is loaded (deterministic from the catalog and settings; seconds on
  MovieLens 100k, longer on 8000 items).

While ``mediarec add --interactions`` has a collaborative refit pending in the background, the
index of the grown catalog serves the previous fit (:meth:`CatalogIndex.serve_fit`,
:mod:`mediarec.index.pending`): its collections and matrix file stay, under the previous generation.

Every collection records a fingerprint of what it was built from (catalog hash, embedder,
vector settings) and whether the build completed. A collection whose fingerprint differs is
stale: it is rebuilt (or, with ``rebuild=False``, reported as an error), never silently used.
Text embedding runs in batches and skips ids already present under the same fingerprint, so an
interrupted build resumes where it stopped and a repeated build is a no-op.

Concurrency: an embedded index (a Chroma ``PersistentClient`` folder) must not be written by two
processes at once, so ``open_index`` holds an exclusive ``fcntl.flock`` on
``$MEDIAREC_HOME/index/<catalog>.lock`` while it opens and builds; a second ``mediarec index`` waits,
then finds the index current, and a reader (``build=False``) takes the lock shared, so it waits for
a running build too. The lock is re-entrant within a process (``mediarec add`` holds it from reading
the registration to committing it, and builds inside). Against a Chroma server, two builders of the same catalog may run
together: collection creation tolerates the other one winning the race and ``upsert`` is idempotent.
Chroma failures (a server that went away, a broken store) surface as :class:`IndexError_`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from pydantic import BaseModel, Field

from mediarec.catalog.model import Catalog
from mediarec.index.collab import CollabModel, CollabSettings
from mediarec.config import DEFAULT_EMBEDDER, Settings, get_settings
from mediarec.errors import ConfigError, IndexError_, MediarecError
from mediarec.infra.atomic import atomic_open
from mediarec.infra.paths import safe_collection_prefix
from mediarec.infra.progress import counting

log = logging.getLogger(__name__)
INDEX_FORMAT = 1


class IndexSettings(BaseModel):
    """What the index depends on besides the catalog."""

    # Settings.embedder (MEDIAREC_EMBEDDER) picks another through :func:`index_settings_for`; it is in
    # the text fingerprint, so an index built with one embedder is rebuilt, never mixed, under another
    embedder: str = DEFAULT_EMBEDDER
    text_max_chars: int = 1000
    batch_size: int = 256
    collab: CollabSettings = Field(default_factory=CollabSettings)


def index_settings_for(catalog: Catalog, settings: Settings, given: IndexSettings | None = None) -> IndexSettings:
    """``given`` (else the defaults for ``catalog``) with the configured embedder, unless ``given``
    names one itself: the one place the index learns which embedder the settings chose."""
    base = given or IndexSettings(collab=CollabSettings.for_catalog(catalog))
    if "embedder" in base.model_fields_set:
        return base
    return base.model_copy(update={"embedder": settings.embedder})


def make_client(settings: Settings, catalog_name: str, chroma_url: str | None = None):
    """An embedded PersistentClient under $MEDIAREC_HOME/index/<catalog>, or an HttpClient for a server URL."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    # Explicit settings (telemetry off): an embedded client opened again in this process must get
    # equal settings, whatever the environment says by then, or Chroma refuses the second one.
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    url = chroma_url or settings.chroma_url
    if url:
        u = urlparse(url if "://" in url else f"http://{url}")
        if not u.hostname:
            raise ConfigError(f"bad --chroma-url {url!r}: expected http://HOST:PORT")
        try:
            client = chromadb.HttpClient(host=u.hostname, port=u.port or 8000, ssl=u.scheme == "https",
                                         settings=chroma_settings)
            client.heartbeat()
        except Exception as e:  # noqa: BLE001 - any connection failure is a configuration problem here
            raise IndexError_(f"cannot reach the Chroma server at {url}: {e}") from None
        return client
    path = Path(settings.index_dir) / catalog_name
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


@contextlib.contextmanager
def chroma_errors(what: str):
    """Chroma and connection failures as :class:`IndexError_` (one line, no traceback in the CLI)."""
    import chromadb.errors
    import httpx

    try:
        yield
    except MediarecError:
        raise
    except (chromadb.errors.ChromaError, httpx.HTTPError, OSError) as e:
        msg = " ".join(str(e).split())[:300]
        raise IndexError_(f"{what}: {type(e).__name__}: {msg}") from e


@contextlib.contextmanager
def build_lock(settings: Settings, catalog_name: str, chroma_url: str | None = None, shared: bool = False):
    """An exclusive lock on the embedded index of ``catalog_name`` (none for a Chroma server).

    Two processes writing one ``PersistentClient`` folder at once race on collection creation and
    on the store's files; the lock makes the second wait (the kernel drops it if the holder dies).
    ``shared``: a reader's lock, so reading waits for a running build instead of finding it half done.
    """
    if chroma_url or settings.chroma_url:
        yield
        return
    import fcntl

    root = Path(settings.index_dir)
    root.mkdir(parents=True, exist_ok=True)
    import threading

    path = (str(root / f"{safe_collection_prefix(catalog_name)}.lock"), threading.get_ident())
    if _HELD.get(path):  # this process holds it already (a flock on a second descriptor would wait for itself)
        _HELD[path] += 1
        try:
            yield
        finally:
            _HELD[path] -= 1
        return
    fd = os.open(path[0], os.O_RDWR | os.O_CREAT, 0o600)
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another mediarec process is building the index of %s; waiting for it", catalog_name)
            fcntl.flock(fd, mode)
        _HELD[path] = 1
        yield
    finally:
        _HELD.pop(path, None)
        os.close(fd)  # closing the descriptor releases the lock


_HELD: dict[tuple[str, int], int] = {}  # (lock file, thread) held in this process, and how deeply (re-entrant)


class _IndexPlace:
    """What a builder and a built index share: where the index of one catalog lives (client,
    prefix, matrix folder), what it is (fingerprints), and reading it back."""

    #: Set by the builder, handed to the index it builds.
    FIELDS = ("catalog", "client", "settings", "_embedder", "prefix", "item_ids", "_pos", "_matrix_dir",
              "serving_fit", "pending_fit", "_fingerprints", "_hashes")

    # -- identity --------------------------------------------------------------------------
    @property
    def embedder(self):
        if self._embedder is None:
            from mediarec.index.embeddings import make_embedder

            object.__setattr__(self, "_embedder", make_embedder(self.settings.embedder))
        return self._embedder

    def text_fingerprint(self) -> str:
        """What the text side of this catalog is (items and embedding settings): part of the learned
        model's identity. The collection itself is keyed per item (:meth:`text_space`, :func:`item_hash`)."""
        if "text" not in self._fingerprints:
            self._fingerprints["text"] = f"v{INDEX_FORMAT}:{self.catalog.items_fingerprint()[:24]}:{self.text_space()}"
        return self._fingerprints["text"]

    def text_space(self) -> str:
        """The text collection's fingerprint: the embedding settings only. Which items it holds, and
        whether each is current, is in every item's own ``h`` (so one new item is embedded alone)."""
        return f"v{INDEX_FORMAT}:{self.settings.embedder}:{self.settings.text_max_chars}"

    def collab_fingerprint(self) -> str:
        """The interactions and the collaborative settings: all the fit depends on (items without
        interactions are not modelled), so adding items alone keeps the collaborative side."""
        if self.serving_fit is not None:
            return self.serving_fit
        if "interactions" not in self._fingerprints:
            self._fingerprints["interactions"] = interactions_fingerprint(self.catalog)
        return f"v{INDEX_FORMAT}:{self._fingerprints['interactions'][:24]}:{self.settings.collab.key()}"

    @property
    def collab_pending(self) -> bool:
        """Whether the previous fit serves while the catalog's own fit is made in the background."""
        return self.serving_fit is not None

    def collab_generation(self) -> str:
        """The suffix of this fit's collections and matrix file: a new fit writes beside the old one,
        so an interrupted update leaves the previous index whole (:meth:`prune` removes old ones)."""
        import hashlib

        return hashlib.sha256(self.collab_fingerprint().encode()).hexdigest()[:6]

    def _collab_names(self) -> tuple[str, str]:
        g = self.collab_generation()
        return f"{self.prefix}-cb{g}", f"{self.prefix}-cq{g}"

    # -- the exact matrix, a file beside the collections -------------------------------------
    @property
    def matrix_path(self) -> Path | None:
        """``<folder>/<prefix>-collab-<generation>.npz``: M with its item ids and the collab fingerprint;
        None for a Chroma server (the matrix is then fitted at load, see the module docstring)."""
        folder = self._matrix_dir
        if folder is None:
            try:
                cs = self.client.get_settings()
                folder = Path(cs.persist_directory) if cs.is_persistent and cs.persist_directory else None
            except Exception:  # noqa: BLE001 - not a Chroma client we know: keep it in memory
                folder = None
        return None if folder is None else Path(folder) / f"{self.prefix}-collab-{self.collab_generation()}.npz"

    def _matrix_fingerprint(self) -> str | None:
        """The stored matrix's fingerprint (reads only that member), None if unreadable."""
        try:
            with np.load(self.matrix_path, allow_pickle=False) as z:
                return str(z["fingerprint"])
        except Exception:  # noqa: BLE001 - missing, truncated, not a zip, no such member: all "no matrix"
            return None

    def _read_matrix(self) -> tuple[list[str], np.ndarray | None, np.ndarray | None]:
        """(item ids, M, None) of the current fingerprint, or (item ids, None, ALS factors); or
        IndexError_ naming the file and the fix."""
        path, fp = self.matrix_path, self.collab_fingerprint()
        if path is None:  # a Chroma server: fit it here (the factors in the server come from the same fit)
            model = CollabModel.fit(self.catalog, self.settings.collab, factorise=False)
            return model.item_ids, model.matrix, (model.item_vectors if model.kind == "als" else None)
        fix = f"run `mediarec index --dataset {self.catalog.name}`"
        if not path.exists():
            raise IndexError_(f"the exact collaborative matrix {path} is missing; {fix}")
        try:
            with np.load(path, allow_pickle=False) as z:
                stored, ids = str(z["fingerprint"]), [str(i) for i in z["item_ids"]]
                factors = z["factors"] if "factors" in z.files else None
                m = z["matrix"] if factors is None else None
        except Exception as e:  # noqa: BLE001 - any failure to read it means it is corrupt
            raise IndexError_(f"the exact collaborative matrix {path} is corrupt ({type(e).__name__}); {fix}") from None
        if stored != fp:
            raise IndexError_(f"the exact collaborative matrix {path} is stale (built from other data); {fix}")
        got = m if factors is None else factors
        if got.dtype != np.float32 or got.shape[0] != len(ids) or (factors is None and m.shape != (len(ids), len(ids))):
            raise IndexError_(f"the exact collaborative matrix {path} is corrupt (shape {got.shape}); {fix}")
        return ids, m, factors

    def _item_hashes(self) -> dict[str, str]:
        """Each item's :func:`item_hash` (computed once: the catalog is immutable)."""
        if self._hashes is None:
            n = self.settings.text_max_chars
            object.__setattr__(self, "_hashes", {i: item_hash(it, n) for i, it in self.catalog.items.items()})
        return self._hashes

    @staticmethod
    def _stored_hashes(col) -> dict[str, str | None]:
        if not col.count():
            return {}
        got = get_all(col, ["metadatas"])
        return {i: (m or {}).get("h") for i, m in zip(got["ids"], got["metadatas"])}

    # -- reading ---------------------------------------------------------------------------
    def is_current(self) -> bool:
        """Every item of the catalog has its current text entry, and this fit's collaborative
        collections and matrix are complete (entries of other items or fits do not matter)."""
        try:
            text = self.text_collection
            cols = [self.client.get_collection(n) for n in self._collab_names()]
        except Exception:  # noqa: BLE001
            return False
        if (text.metadata or {}).get("fingerprint") != self.text_space():
            return False
        stored = self._stored_hashes(text)
        if any(stored.get(i) != h for i, h in self._item_hashes().items()):
            return False
        return self.collab_complete(cols)

    def collab_complete(self, cols: list | None = None) -> bool:
        """This fit's collaborative collections and matrix file are complete."""
        if cols is None:
            try:
                cols = [self.client.get_collection(n) for n in self._collab_names()]
            except Exception:  # noqa: BLE001
                return False
        fp = self.collab_fingerprint()
        return all((c.metadata or {}).get("fingerprint") == fp and (c.metadata or {}).get("complete")
                   for c in cols) and (self.matrix_path is None or self._matrix_fingerprint() == fp)

    def _load_collab(self) -> CollabModel:
        """The factors from Chroma and the exact matrix from its file, in the file's item order."""
        ids, matrix, factors = self._read_matrix()
        if factors is not None:
            return CollabModel(ids, factors, factors, self.settings.collab, None, kind="als")
        item_name, query_name = self._collab_names()
        item = get_all(self.client.get_collection(item_name), ["embeddings"])
        query = get_all(self.client.get_collection(query_name), ["embeddings"])
        if not ids:
            return CollabModel([], np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32), self.settings.collab,
                               matrix)
        ipos = {i: k for k, i in enumerate(item["ids"])}
        qpos = {i: k for k, i in enumerate(query["ids"])}
        if set(ipos) != set(ids) or set(qpos) != set(ids):
            raise IndexError_(f"the exact collaborative matrix {self.matrix_path} does not match the collections "
                              f"(other items); run `mediarec index --dataset {self.catalog.name}`")
        iv = np.asarray(item["embeddings"], dtype=np.float32)[[ipos[i] for i in ids]]
        qv = np.asarray(query["embeddings"], dtype=np.float32)[[qpos[i] for i in ids]]
        return CollabModel(ids, qv, iv, self.settings.collab, matrix)

    @property
    def text_collection(self):
        """Our embedding function is attached, so ``query_texts`` works on it too."""
        return self.client.get_collection(f"{self.prefix}-text", embedding_function=self.embedder)

    @property
    def collab_collection(self):
        return self.client.get_collection(self._collab_names()[0])

    def position(self, item_id: str) -> int | None:
        return self._pos.get(item_id)


class IndexBuilder(_IndexPlace):
    """Builds (or brings up to date) the Chroma collections and the exact matrix of one catalog,
    then hands out the built :class:`CatalogIndex`; or loads an index that is already built.

    ``previous``: the served index of the catalog this one grows (an update, app/update.py): its
    loaded text vectors and collaborative model are reused where they still hold, instead of being
    read back from Chroma and disk. ``prefit``: a collaborative fit made outside the build lock
    (app/background.py), used when its settings match.
    ``matrix_dir``: where the exact collaborative matrix is kept (default: the embedded client's
    folder, or ``$MEDIAREC_HOME/index`` for a Chroma server)."""

    def __init__(self, catalog: Catalog, client: Any, settings: IndexSettings | None = None,
                 embedder: Any | None = None, prefix: str | None = None, matrix_dir: str | Path | None = None,
                 previous: "CatalogIndex | None" = None, prefit: CollabModel | None = None):
        self.catalog = catalog
        self.client = client
        self.settings = settings or IndexSettings(collab=CollabSettings.for_catalog(catalog))
        self._embedder = embedder
        self.prefix = safe_collection_prefix(prefix or catalog.name)
        self.item_ids = list(catalog.items)
        self._pos = {i: k for k, i in enumerate(self.item_ids)}
        self._matrix_dir = Path(matrix_dir) if matrix_dir is not None else None
        # A pending background refit (index/pending.py): the previous fit's fingerprint serves this
        # catalog while the fit a full build would make (``pending_fit``) is being fitted.
        self.serving_fit: str | None = None
        self.pending_fit: str | None = None
        self._fingerprints: dict[str, str] = {}  # the catalog is immutable: each is computed once
        self._hashes: dict[str, str] | None = None
        self.previous = previous
        self.prefit = prefit
        self.text_vectors: np.ndarray | None = None
        self.collab: CollabModel | None = None
        self.embedded = 0  # items embedded by the last build (an update embeds only its new items)
        self.collab_refit = False  # whether the last build fitted the collaborative side again
        self._new_vectors: dict[str, np.ndarray] = {}

    def serve_fit(self, fingerprint: str | None, settings: CollabSettings | None = None,
                  target: str | None = None) -> None:
        """Serve the complete fit ``fingerprint`` (made with ``settings``) instead of this catalog's
        own, ``target``, which a background process fits; None: serve the catalog's own fit again."""
        if fingerprint is not None:
            self.settings = self.settings.model_copy(update={"collab": settings})
        self.serving_fit, self.pending_fit = fingerprint, (target if fingerprint is not None else None)

    # -- building --------------------------------------------------------------------------
    def build(self, progress: bool = False, rebuild: bool = True, prune: bool = True) -> "CatalogIndex":
        """Bring all collections up to date (idempotent, resumable), then load them. ``prune``: then
        delete what another catalog state left (old collaborative fits, items no longer in the
        catalog); an update (``mediarec.app.add_items``) prunes only after it committed."""
        import time

        t0 = time.perf_counter()
        self._build_text(progress, rebuild)
        t1 = time.perf_counter()
        self._build_collab(progress, rebuild)
        t2 = time.perf_counter()
        self._load(verify=False)  # just built: no need to read every entry back to check it
        log.info("index of %s: text side %.1fs (%d embedded), collaborative side %.1fs (%s, %d items%s), "
                 "loading %.1fs", self.catalog.name, t1 - t0, self.embedded, t2 - t1, self.collab.kind,
                 len(self.collab.item_ids), ", fitted" if self.collab_refit else "", time.perf_counter() - t2)
        if prune:
            self.prune()
        return self._snapshot()

    def prune(self) -> list[str]:
        """Delete the collaborative collections and matrix files of other fits and the text entries
        of items this catalog does not have; what was deleted."""
        import re

        current = set(self._collab_names())
        mine = re.compile(rf"^{re.escape(self.prefix)}-(c[bq][0-9a-f]{{6}}|collab|collabq)$")
        gone = []
        for col in self.client.list_collections():
            name = col if isinstance(col, str) else col.name
            if mine.match(name) and name not in current:
                self.client.delete_collection(name)
                gone.append(name)
        if self.matrix_path is not None:
            for f in self.matrix_path.parent.glob(f"{self.prefix}-collab*.npz"):
                if f != self.matrix_path and re.fullmatch(rf"{re.escape(self.prefix)}-collab(-exact|-[0-9a-f]{{6}})\.npz",
                                                          f.name):
                    f.unlink(missing_ok=True)
                    gone.append(f.name)
        text = self.text_collection
        extra = [i for i in get_all(text, [])["ids"] if i not in self._pos]
        for start in range(0, len(extra), 5000):
            text.delete(ids=extra[start:start + 5000])
        if extra:
            gone.append(f"{len(extra)} text entries")
        return gone

    def _collection(self, suffix: str, fingerprint: str, space: str, rebuild: bool,
                    embedding_function: Any = None):
        """The collection, created if missing, recreated if stale (or an error when rebuild=False)."""
        name = f"{self.prefix}-{suffix}"
        meta = {"fingerprint": fingerprint, "complete": False}
        try:
            col = self.client.get_collection(name, embedding_function=embedding_function)
        except Exception:  # noqa: BLE001 - chroma raises different types for "not found" across versions
            col = None
            if embedding_function is not None:
                # Chroma refuses a collection made with another embedding function (another
                # embedder): open it without one, so the fingerprint below finds it stale
                with contextlib.suppress(Exception):
                    col = self.client.get_collection(name)
        if col is not None and (col.metadata or {}).get("fingerprint") != fingerprint:
            if not rebuild:
                raise IndexError_(f"index collection {name!r} is stale (built from other data); "
                                  f"run `mediarec index --dataset {self.catalog.name}`")
            log.info("collection %s is stale; rebuilding", name)
            self.client.delete_collection(name)
            col = None
        if col is None:
            # A deeper HNSW search than Chroma's default (ef 100): the candidate pool must hold each
            # side's true best items, or candidates() and the exact score_all() drift apart.
            try:
                col = self.client.create_collection(name, metadata=meta, embedding_function=embedding_function,
                                                    configuration={"hnsw": {"space": space, "ef_search": 400}})
            except Exception as create_error:  # noqa: BLE001 - maybe another builder (a second process
                # on the same server) made it first: use theirs if it is built from the same data
                try:
                    col = self.client.get_collection(name, embedding_function=embedding_function)
                except Exception:  # noqa: BLE001
                    raise create_error from None
                if (col.metadata or {}).get("fingerprint") != fingerprint:
                    raise create_error from None
                log.info("collection %s was just created by another builder; using it", name)
        return col

    def _build_text(self, progress: bool, rebuild: bool) -> None:
        col = self._collection("text", self.text_space(), "cosine", rebuild, embedding_function=self.embedder)
        stored = self._stored_hashes(col)
        want = self._item_hashes()
        todo = [i for i in self.item_ids if stored.get(i) != want[i]]
        if not todo:
            if not (col.metadata or {}).get("complete"):
                col.modify(metadata={"fingerprint": self.text_space(), "complete": True})
            return
        changed = [i for i in todo if i in stored]
        if changed and not rebuild:
            raise IndexError_(f"index collection {col.name!r} is stale ({len(changed)} item(s) changed); "
                              f"run `mediarec index --dataset {self.catalog.name}`")
        col.modify(metadata={"fingerprint": self.text_space(), "complete": False})
        bs = self.settings.batch_size
        # texts of similar length share a batch, so the embedder pads less
        todo.sort(key=lambda i: len(self.catalog.items[i].text(self.settings.text_max_chars)))
        with counting(progress) as bar:
            task = bar.add_task(f"embedding {self.catalog.name}", total=len(self.item_ids),
                                completed=len(self.item_ids) - len(todo))
            for start in range(0, len(todo), bs):
                ids = todo[start:start + bs]
                items = [self.catalog.items[i] for i in ids]
                vecs = self.embedder.embed([it.text(self.settings.text_max_chars) for it in items])
                self._new_vectors.update(zip(ids, vecs))
                col.upsert(ids=ids, embeddings=vecs, metadatas=[_item_meta(it) | {"h": want[i]}
                                                                 for i, it in zip(ids, items)])
                bar.advance(task, len(ids))
        self.embedded = len(todo)
        col.modify(metadata={"fingerprint": self.text_space(), "complete": True})

    def _build_collab(self, progress: bool, rebuild: bool) -> None:
        fp = self.collab_fingerprint()
        item_name, query_name = self._collab_names()
        item_col = self._collection(item_name[len(self.prefix) + 1:], fp, "ip", rebuild)
        query_col = self._collection(query_name[len(self.prefix) + 1:], fp, "ip", rebuild)
        collections_done = all((c.metadata or {}).get("complete") for c in (item_col, query_col))
        prev = self.previous
        if collections_done and prev is not None and prev.collab is not None \
                and prev.collab_fingerprint() == fp and prev.matrix_path == self.matrix_path \
                and (self.matrix_path is None or self.matrix_path.exists()):
            self.collab = prev.collab  # the same fit (no new interactions): already in memory
            return
        if collections_done:
            try:
                self.collab = self._load_collab()
                return
            except IndexError_ as e:  # the exact matrix is missing, stale or corrupt: fit again
                if self.serving_fit is not None:
                    raise
                log.info("%s; rebuilding it", e)
        if self.serving_fit is not None:  # fitting this catalog under the previous fit's name would lie
            raise IndexError_(f"the collaborative fit serving {self.catalog.name!r} while it is refitted is gone; "
                              f"run `mediarec index --dataset {self.catalog.name}`")
        prefit = self.prefit if self.prefit is not None and self.prefit.settings == self.settings.collab else None
        model = prefit or CollabModel.fit(self.catalog, self.settings.collab)
        self.collab_refit = True
        if not collections_done:
            bs = 1000
            # ALS queries with folded-in user vectors, not from query-side vectors: its query
            # collection stays empty (the item factors are in the matrix file too)
            sides = [(item_col, model.item_vectors)] + ([] if model.kind == "als" else [(query_col, model.query_vectors)])
            with counting(progress) as bar:
                task = bar.add_task(f"collaborative vectors {self.catalog.name}", total=len(sides) * len(model.item_ids))
                for col, vecs in sides:
                    for start in range(0, len(model.item_ids), bs):
                        col.upsert(ids=model.item_ids[start:start + bs], embeddings=vecs[start:start + bs])
                        bar.advance(task, min(bs, len(model.item_ids) - start))
        if self.matrix_path is not None:
            self._write_matrix(model, fp)
        if not collections_done:
            for col in (item_col, query_col):
                col.modify(metadata={"fingerprint": fp, "complete": True})
        self.collab = model

    def _write_matrix(self, model: CollabModel, fingerprint: str) -> None:
        """Atomically: a reader sees the old file or the whole new one, never half a matrix."""
        with atomic_open(self.matrix_path, "wb") as f:
            if model.kind == "als":  # no item-item matrix: the factors are what ranks
                np.savez(f, fingerprint=np.array(fingerprint), item_ids=np.array(model.item_ids, dtype=str),
                         factors=model.item_vectors)
            else:
                np.savez(f, fingerprint=np.array(fingerprint), item_ids=np.array(model.item_ids, dtype=str),
                         matrix=model.matrix)

    def load(self, verify: bool = True) -> "CatalogIndex":
        """The built index, its vectors read into memory (exact re-scoring of candidates needs
        them); an error naming the fix when it is missing, incomplete or stale."""
        self._load(verify)
        return self._snapshot()

    def _load(self, verify: bool) -> None:
        """``verify=False`` (right after :meth:`build`): skip reading every entry's hash back."""
        if verify and not self.is_current():
            raise IndexError_(f"the index of {self.catalog.name!r} is missing, incomplete or stale; "
                              f"run `mediarec index --dataset {self.catalog.name}`")
        self.text_vectors = self._vectors_from_previous()
        if self.text_vectors is None:
            text = self.text_collection
            got = get_all(text, ["embeddings"])
            vecs = np.zeros((len(self.item_ids), len(got["embeddings"][0])), dtype=np.float32)
            for i, v in zip(got["ids"], got["embeddings"]):
                if i in self._pos:  # an interrupted update may have left entries of items to come
                    vecs[self._pos[i]] = v
            self.text_vectors = vecs
        if self.collab is None or self.collab.settings != self.settings.collab:
            self.collab = self._load_collab()

    def _vectors_from_previous(self) -> np.ndarray | None:
        """The text vectors assembled from the previous index's (items whose entry did not change)
        and the ones this build embedded; None when there is no previous index or it cannot serve."""
        prev = self.previous
        if prev is None or prev.text_vectors is None or prev.text_space() != self.text_space():
            return None
        old_hashes, hashes = prev._item_hashes(), self._item_hashes()
        vecs = np.zeros((len(self.item_ids), prev.text_vectors.shape[1]), dtype=np.float32)
        for k, i in enumerate(self.item_ids):
            if i in self._new_vectors:
                vecs[k] = self._new_vectors[i]
            elif old_hashes.get(i) == hashes[i] and prev.position(i) is not None:
                vecs[k] = prev.text_vectors[prev.position(i)]
            else:
                return None  # embedded by an earlier, interrupted build: read it back from Chroma
        return vecs

    def _snapshot(self) -> "CatalogIndex":
        return CatalogIndex(self)


class CatalogIndex(_IndexPlace):
    """A built index of one catalog, read-only: the vectors and the collaborative model in memory,
    the collections to query. Made by :class:`IndexBuilder` (``build``, ``load``) or
    :func:`open_index`; retrieval, the learned stage and the evidence read it."""

    def __init__(self, built: IndexBuilder):
        # The builder's own fields, not computed again (item ids and positions, fingerprints, hashes);
        # embedded and collab_refit say what the build that made it did.
        for name in _IndexPlace.FIELDS + ("text_vectors", "collab", "embedded", "collab_refit"):
            object.__setattr__(self, name, getattr(built, name))
        # Tables the layers above derive from this snapshot (the explanations' evidence and checker):
        # built once, and gone with the snapshot (a module-level cache kept every index alive).
        object.__setattr__(self, "derived", {})

    # A snapshot's collections never change under it: their handles are fetched once (a
    # ``get_collection`` per query was a fifth of a served request's time).
    @property
    def text_collection(self):
        if "text_collection" not in self.derived:
            self.derived["text_collection"] = super().text_collection
        return self.derived["text_collection"]

    @property
    def collab_collection(self):
        if "collab_collection" not in self.derived:
            self.derived["collab_collection"] = super().collab_collection
        return self.derived["collab_collection"]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a built CatalogIndex is read-only (build a new one with IndexBuilder), cannot set {name!r}")

    def builder(self, catalog: Catalog | None = None, settings: IndexSettings | None = None) -> IndexBuilder:
        """A builder in this index's place (client, prefix, matrix folder, embedder): for ``catalog``
        (a grown one, reusing this index's vectors and fit where they hold) or for the same one
        (``builder().prune()`` after an update has committed)."""
        if catalog is None:
            b = IndexBuilder(self.catalog, self.client, self.settings, embedder=self._embedder, prefix=self.prefix,
                             matrix_dir=self._matrix_dir)
            b.serving_fit, b.pending_fit = self.serving_fit, self.pending_fit
            return b
        return IndexBuilder(catalog, self.client, settings or self.settings, embedder=self._embedder,
                            prefix=self.prefix, matrix_dir=self._matrix_dir, previous=self)


#: Rows per ``get`` of a whole collection: one unpaged ``get`` of ~33,000+ entries with their
#: metadata or vectors exceeds SQLite's limit on query variables ("too many SQL variables").
GET_PAGE = 5000


def get_all(col, include: list[str], page: int = GET_PAGE) -> dict[str, list]:
    """Every entry of a Chroma collection (``ids`` and the ``include`` fields), read in pages."""
    out: dict[str, list] = {"ids": [], **{k: [] for k in include}}
    offset = 0
    while True:
        got = col.get(include=include, limit=page, offset=offset)
        out["ids"] += list(got["ids"])
        for k in include:
            out[k] += list(got[k])
        if len(got["ids"]) < page:
            return out
        offset += page


def item_hash(item, max_chars: int) -> str:
    """What an item's text entry depends on (the embedded text and the filterable metadata)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps([item.text(max_chars), _item_meta(item)], sort_keys=True).encode()
                          ).hexdigest()[:16]


def interactions_fingerprint(catalog: Catalog) -> str:
    """sha256 over the interaction log alone (what the collaborative fit depends on)."""
    import hashlib

    h = hashlib.sha256()
    for x in catalog.interactions:
        h.update(f"{x.user}\t{x.item}\t{x.timestamp}\t{x.rating}\t{x.weight}\t{x.event}\n".encode())
    return h.hexdigest()


def _item_meta(item) -> dict[str, Any]:
    meta: dict[str, Any] = {"title": item.title[:500], "kind": item.kind}
    if item.year:
        meta["year"] = int(item.year)
    return meta




def open_index(catalog: Catalog, settings: Settings | None = None, chroma_url: str | None = None,
               build: bool = True, progress: bool = False, index_settings: IndexSettings | None = None,
               prefix: str | None = None, embedder: Any | None = None, previous_fit: bool = True) -> CatalogIndex:
    """The index of a catalog, built or brought up to date when ``build`` is true. ``previous_fit``:
    while a background refit of a registered catalog is pending, serve the previous fit (False: a
    full build, which fits in the foreground and settles the pending refit)."""
    from mediarec.index import pending

    settings = settings or get_settings()
    where = chroma_url or settings.chroma_url or str(Path(settings.index_dir) / catalog.name)
    with build_lock(settings, catalog.name, chroma_url, shared=not build):
        client = make_client(settings, catalog.name, chroma_url)
        idx = IndexBuilder(catalog, client, index_settings_for(catalog, settings, index_settings),
                           embedder=embedder, prefix=prefix)
        doing = "building" if build else "reading"
        with chroma_errors(f"{doing} the index of {catalog.name!r} in {where} failed (run `mediarec index "
                           f"--dataset {catalog.name}` again to resume)"):
            if previous_fit:
                pending.serve_previous(idx, settings.home)
            if not build:
                return idx.load()
            built = idx.build(progress=progress, prune=not idx.collab_pending)
            if not previous_fit:
                pending.settle(built, settings.home)
            return built

