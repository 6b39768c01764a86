"""A collaborative refit pending in the background: the previous fit serves the grown catalog.

Fitting the collaborative side again is most of what new interactions cost (minutes on latest-small
under load), so ``mediarec add --interactions`` does not wait for it. It commits the grown catalog
with a marker in its registration (``catalog.json``, ``collab_pending``):

* ``serving``: the fingerprint of the fit that serves meanwhile, and ``settings``, the collaborative
  settings it was made with (its collections and matrix file stay, under their own generation);
* ``target``: the collab fingerprint a full build of the grown catalog fits.

Every opening of the catalog's index (:func:`mediarec.index.store.open_index`) whose own fit would be
``target`` serves ``serving`` instead, as long as that fit is still whole: the new histories rank
through the previous item-item matrix (an item the previous fit does not model has no collaborative
vector until the refit), and nothing is fitted in the foreground. The learned stage's key follows
the served fit, so its carried-over model serves too.

A detached process (:mod:`mediarec.app.background`) fits ``target`` and, under the index's build
lock, writes it beside the previous one and clears the marker if the catalog did not change
meanwhile (else it fits the latest state); then it prunes the previous fit. A full ``mediarec
index`` fits in the foreground and clears the marker (:func:`settle`). A marker whose target is
not what an opening would build (another catalog state, other settings) or whose serving fit is
gone (``mediarec forget`` deleted it) is ignored: that opening builds its own fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mediarec.index.collab import CollabSettings


def _registration(catalog_name: str, home: Path):
    from mediarec.catalog.own import registration
    from mediarec.errors import MediarecError

    try:
        return registration(catalog_name, home)
    except MediarecError:  # an unreadable registration: nothing pending that we can honour
        return None


def marker_of(index: Any) -> dict[str, Any] | None:
    """The marker that records ``index``'s pending refit (None when its own fit serves)."""
    if not index.collab_pending:
        return None
    return {"serving": index.serving_fit, "settings": index.settings.collab.model_dump(mode="json"),
            "target": index.pending_fit}


def serve_previous(index: Any, home: Path) -> bool:
    """Make ``index`` serve the pending refit's previous fit when the registration names one for
    exactly the fit ``index`` would build, and that fit is whole; whether it does."""
    from mediarec.infra.paths import safe_collection_prefix

    if index.matrix_path is None or index.prefix != safe_collection_prefix(index.catalog.name):
        return False  # a Chroma server fits at load anyway; another prefix is another index (eval)
    reg = _registration(index.catalog.name, home)
    mark = reg.collab_pending if reg is not None else None
    if not mark:
        return False
    target = index.collab_fingerprint()
    if mark.get("target") != target:
        return False
    index.serve_fit(mark["serving"], CollabSettings(**mark["settings"]), target)
    if not index.collab_complete():
        index.serve_fit(None)
        return False
    return True


def settle(index: Any, home: Path) -> bool:
    """After a full build: clear a marker whose target ``index`` now holds; whether it did."""
    reg = _registration(index.catalog.name, home)
    if reg is None or not reg.collab_pending or index.collab_pending \
            or reg.collab_pending.get("target") != index.collab_fingerprint():
        return False
    reg.collab_pending = None
    reg.save()
    return True
