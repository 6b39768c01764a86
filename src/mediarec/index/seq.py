"""A SASRec-class sequential model: a causal transformer over a user's item history.

Why here: like the collaborative side, it is learned from behaviour, and the seed's r(u, v) =
f(u · v) is exactly its last hidden state against its (tied) item embeddings. Trained with
cross-entropy over every item (SASRec-CE, the strongest published form on MovieLens-1M).

Choices that matter for correctness:

- Histories are right-padded and attention is causal, so a real position never sees a pad and no
  row is fully masked; ``nn.MultiheadAttention``'s fast path (which turns fully masked, left-padded
  rows into NaN, and a NaN score counts as a hit under ``>``) is never used. Scores are still
  checked for NaN before they leave this module.
- Positions are counted from the end of the history (as SASRec's left padding does), so the
  latest item always has position 0.
- Training sees only the histories it is given; the caller holds out validation and test targets.
  Early stopping reads validation targets only.
- Every epoch ends in a checkpoint; the random state of an epoch derives from (seed, epoch), so a
  resumed run equals an uninterrupted one.

torch is imported lazily: the rest of mediarec runs without it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mediarec.errors import ConfigError, ModelError

FORMAT = 1


@dataclass(frozen=True)
class SeqSettings:
    """The model's few settings; everything but ``epochs``/``patience``/``device``/``threads``
    enters the fingerprint, so a stored model is reused only for the same settings."""

    dim: int = 64
    layers: int = 2
    heads: int = 2
    max_len: int = 200
    windows: bool = True  # train on every max_len window of a long history, not only the latest
    dropout: float = 0.2  # embeddings, residual branches, feed-forward
    attn_dropout: float = 0.0  # on the attention weights: 4x the attention's CPU time (measured), so off
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch: int = 64
    seed: int = 0
    # Members trained with seeds seed, seed + 1, ...; their scores averaged. Each member is the
    # model a single run with its seed stores (its own fingerprint), so a stored one is reused.
    ensemble: int = 1
    epochs: int = 200
    patience: int = 20
    device: str = "cpu"
    threads: int | None = 1

    def fingerprint_fields(self) -> dict:
        d = asdict(self)
        for k in ("epochs", "patience", "device", "threads", "ensemble"):
            d.pop(k)
        return d

    def members(self) -> list["SeqSettings"]:
        """One model's settings per member of the ensemble (itself, for one)."""
        from dataclasses import replace

        return [replace(self, seed=self.seed + k, ensemble=1) for k in range(max(1, self.ensemble))]


def torch_or_error():
    """torch, or a one-line ConfigError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module("torch")
    except ImportError:
        raise ConfigError("the sequential model needs torch: pip install 'mediarec[seq]' "
                          "(torch==2.13.0 pinned)") from None


def check_device(device: str):
    """torch, after checking that ``device`` ("cpu", "cuda", "cuda:N") is usable here."""
    torch = torch_or_error()
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"--device {device}: use cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available to torch here")
    return torch


def data_fingerprint(n_items: int, histories: Sequence[Sequence[int]], settings: SeqSettings) -> str:
    """What a stored model was trained on: item count, every training history (in any order of
    users), the settings."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "n_items": n_items, "settings": settings.fingerprint_fields()},
                        sort_keys=True).encode())
    for d in sorted(hashlib.sha256(np.asarray(x, dtype=np.int64).tobytes()).digest() for x in histories):
        h.update(d)
    return h.hexdigest()[:20]


def _build_model(torch, n_items: int, s: SeqSettings):
    nn = torch.nn
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(s.dim)
            self.qkv = nn.Linear(s.dim, 3 * s.dim)
            self.out = nn.Linear(s.dim, s.dim)
            self.ln2 = nn.LayerNorm(s.dim)
            self.ff = nn.Sequential(nn.Linear(s.dim, 4 * s.dim), nn.GELU(), nn.Dropout(s.dropout),
                                    nn.Linear(4 * s.dim, s.dim))
            self.drop = nn.Dropout(s.dropout)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, s.heads, d // s.heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=s.attn_dropout if self.training else 0.0)
            x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, t, d)))
            return x + self.drop(self.ff(self.ln2(x)))

    class SASRec(nn.Module):
        def __init__(self):
            super().__init__()
            self.items = nn.Embedding(n_items + 1, s.dim, padding_idx=0)  # 0 = padding
            self.pos = nn.Embedding(s.max_len, s.dim)
            self.drop = nn.Dropout(s.dropout)
            self.blocks = nn.ModuleList(Block() for _ in range(s.layers))
            self.ln = nn.LayerNorm(s.dim)
            nn.init.normal_(self.items.weight, std=s.dim ** -0.5)
            nn.init.normal_(self.pos.weight, std=0.02)

        def forward(self, seq, lengths):
            """Hidden states (b, t, d) for right-padded ``seq`` (item index + 1; 0 = pad)."""
            t = seq.shape[1]
            pos = (lengths[:, None] - 1 - torch.arange(t, device=seq.device)[None, :]).clamp(min=0)
            x = self.items(seq) * math.sqrt(s.dim) + self.pos(pos)
            x = self.drop(x)
            for blk in self.blocks:
                x = blk(x)
            return self.ln(x)

        def item_matrix(self):
            return self.items.weight[1:]

    return SASRec()


def _pad(torch, rows: list[np.ndarray], device):
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    width = max(1, int(lengths.max()))
    arr = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        arr[i, :len(r)] = r
    return torch.from_numpy(arr).to(device), torch.from_numpy(np.maximum(lengths, 1)).to(device)


def training_windows(histories: Sequence[Sequence[int]], max_len: int, windows: bool = True):
    """Training pairs (inputs as item index + 1, targets as item index): hist[:-1] predicts hist[1:].

    A history longer than ``max_len`` gives its latest ``max_len`` pairs, and with ``windows`` each
    earlier ``max_len`` too (as LRURec's and BERT4Rec's loaders cut them): on MovieLens-1M the
    latest 100 alone are 45% of the training pairs."""
    xs, ys = [], []
    for hist in histories:
        h = np.asarray(hist, dtype=np.int64)
        if len(h) < 2:
            continue
        x, y = h[:-1] + 1, h[1:]
        ends = range(len(x), 0, -max_len) if windows else [len(x)]
        for end in ends:
            xs.append(x[max(0, end - max_len):end])
            ys.append(y[max(0, end - max_len):end])
    return xs, ys


def _batches(rng: np.random.Generator, lengths: np.ndarray, batch: int) -> list[np.ndarray]:
    """Shuffled batches of similar lengths (less padding): shuffle, sort each run of 16 batches
    by length, cut, shuffle the batches."""
    order = rng.permutation(len(lengths))
    out = []
    span = batch * 16
    for start in range(0, len(order), span):
        chunk = order[start:start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
    return [out[i] for i in rng.permutation(len(out))]


@dataclass
class TrainResult:
    epochs_run: int
    best_epoch: int
    best_val_ndcg10: float
    stopped_early: bool
    resumed_from: int
    seconds: float
    history: list[dict] = field(default_factory=list)


class SeqModel:
    """A trained model: scores every item for a history (item indices 0..n_items-1)."""

    def __init__(self, net, n_items: int, settings: SeqSettings, torch):
        self.net, self.n_items, self.settings, self._torch = net, n_items, settings, torch
        self.device = next(net.parameters()).device

    def score_histories(self, histories: Sequence[Sequence[int]], batch: int = 256) -> np.ndarray:
        """(n, n_items) scores; raises ModelError on a NaN (a NaN would count as a hit under ``>``)."""
        torch = self._torch
        out = np.empty((len(histories), self.n_items), dtype=np.float32)
        self.net.eval()
        L = self.settings.max_len
        with torch.no_grad():
            items = self.net.item_matrix()
            for start in range(0, len(histories), batch):
                rows = [np.asarray(h, dtype=np.int64)[-L:] + 1 for h in histories[start:start + batch]]
                seq, lengths = _pad(torch, rows, self.device)
                h = self.net(seq, lengths)
                last = h[torch.arange(len(rows), device=self.device), lengths - 1]
                s = (last @ items.T).float().cpu().numpy()
                if np.isnan(s).any():
                    raise ModelError("the sequential model produced NaN scores")
                out[start:start + len(rows)] = s
        return out


class SeqEnsemble:
    """Several trained models of one catalogue, scored as the mean of their scores. Each model's
    softmax normalises by a constant per history, so the mean of the scores orders items as the
    mean of the log-probabilities does (a geometric mean of the members' distributions)."""

    def __init__(self, members: Sequence[SeqModel]):
        self.members = list(members)
        self.n_items, self.settings = self.members[0].n_items, self.members[0].settings

    def score_histories(self, histories: Sequence[Sequence[int]], batch: int = 256) -> np.ndarray:
        out = self.members[0].score_histories(histories, batch)
        for m in self.members[1:]:
            out += m.score_histories(histories, batch)
        return out / len(self.members)


def ndcg_hr_at(scores: np.ndarray, targets: np.ndarray, seen: Sequence[Sequence[int]], k: int = 10):
    """Per-row NDCG@k and HR@k with seen items other than the target excluded (full ranking, as the
    harness's full mode; ties count against us)."""
    rows = np.arange(len(targets))
    t = scores[rows, targets].copy()
    scores = scores.copy()
    for i, s in enumerate(seen):
        if len(s):
            scores[i, np.asarray(s, dtype=np.int64)] = -np.inf
    scores[rows, targets] = t
    rank = (scores >= t[:, None]).sum(axis=1) - 1  # 0 = top; a tie is ranked above the target
    rank = np.where(np.isfinite(t), rank, scores.shape[1])
    hit = rank < k
    return np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0), hit.astype(float)


def train(n_items: int, histories: Sequence[Sequence[int]], settings: SeqSettings, *,
          val_targets: Sequence[int] | None = None, workdir: str | Path | None = None,
          progress: bool = False, log: Callable[[str], None] | None = None) -> tuple[SeqModel, TrainResult]:
    """Train on ``histories`` (item indices, oldest first) only; ``val_targets[i]`` (or -1) is the
    item after ``histories[i]``, read only for early stopping. ``workdir`` holds ``checkpoint.pt``
    (written every epoch, resumed from when present) and ``model.pt`` (the best weights)."""
    s = settings
    torch = check_device(s.device)
    if s.dim % s.heads:
        raise ConfigError(f"seq: dim {s.dim} is not a multiple of heads {s.heads}")
    if s.threads:
        torch.set_num_threads(s.threads)
    device = torch.device(s.device)
    torch.manual_seed(s.seed)
    net = _build_model(torch, n_items, s).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=s.weight_decay, betas=(0.9, 0.98))

    xs, ys = training_windows(histories, s.max_len, s.windows)
    if not xs:
        raise ModelError("seq: no history has two items; nothing to train on")
    val_rows = [i for i, v in enumerate(val_targets or []) if v is not None and v >= 0 and len(histories[i])]

    workdir = Path(workdir) if workdir else None
    start_epoch, best, best_epoch, bad, hist_log = 0, -1.0, 0, 0, []
    best_state = None
    ck_path = workdir / "checkpoint.pt" if workdir else None
    fp = data_fingerprint(n_items, histories, s)
    if ck_path and ck_path.exists():
        ck = torch.load(ck_path, map_location=device, weights_only=False)
        if ck.get("fingerprint", fp) != fp:
            raise ModelError(f"{ck_path}: this checkpoint was trained on other data or settings; "
                             "remove it or use another folder")
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start_epoch, best, best_epoch, bad, hist_log = (ck["epoch"], ck["best"], ck["best_epoch"],
                                                         ck["bad"], ck["history"])
        best_state = ck["best_state"]
    resumed_from = start_epoch
    say = log or (lambda m: None)
    if resumed_from:
        say(f"seq: resuming after epoch {resumed_from} (best val NDCG@10 {best:.4f} at epoch {best_epoch})")

    model = SeqModel(net, n_items, s, torch)
    t0 = time.monotonic()
    stopped = bad >= s.patience
    epoch = start_epoch
    from mediarec.infra.progress import counting

    n_batches = math.ceil(len(xs) / s.batch)
    lengths_all = np.array([len(x) for x in xs])
    with counting(progress, transient=True) as bar:
        epochs_task = bar.add_task("seq training", total=s.epochs, completed=start_epoch)
        batch_task = bar.add_task("  batches", total=n_batches)
        while epoch < s.epochs and not stopped:
            torch.manual_seed(s.seed * 1_000_003 + epoch)  # dropout; a resumed epoch draws the same
            batches = _batches(np.random.default_rng([s.seed, epoch]), lengths_all, s.batch)
            net.train()
            bar.reset(batch_task, total=n_batches)
            total, count = 0.0, 0
            for idx in batches:
                seq, lengths = _pad(torch, [xs[i] for i in idx], device)
                tgt, _ = _pad(torch, [ys[i] + 1 for i in idx], device)  # 0 = pad
                h = net(seq, lengths)
                mask = tgt > 0
                logits = h[mask] @ net.item_matrix().T
                loss = torch.nn.functional.cross_entropy(logits, tgt[mask] - 1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n = int(mask.sum())
                total, count = total + float(loss.detach()) * n, count + n
                bar.advance(batch_task, 1)
            epoch += 1
            entry = {"epoch": epoch, "loss": total / max(count, 1)}
            if val_rows:
                sc = model.score_histories([histories[i] for i in val_rows])
                nd, hr = ndcg_hr_at(sc, np.asarray([val_targets[i] for i in val_rows]),
                                    [histories[i] for i in val_rows])
                entry.update(val_ndcg10=float(nd.mean()), val_hr10=float(hr.mean()))
                if entry["val_ndcg10"] > best:
                    best, best_epoch, bad = entry["val_ndcg10"], epoch, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    bad += 1
                stopped = bad >= s.patience
            else:
                best_epoch, best_state = epoch, {k: v.detach().clone() for k, v in net.state_dict().items()}
            entry["seconds"] = round(time.monotonic() - t0, 1)
            hist_log.append(entry)
            bar.update(epochs_task, advance=1, description=f"seq training (loss {entry['loss']:.3f}"
                       + (f", best validation NDCG@10 {best:.4f} at epoch {best_epoch})" if val_rows else ")"))
            say("seq: " + " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items()))
            if ck_path:
                from mediarec.infra.atomic import atomic_open

                with atomic_open(ck_path, "wb") as f:
                    torch.save({"fingerprint": fp, "model": net.state_dict(), "opt": opt.state_dict(),
                                "epoch": epoch, "best": best,
                                "best_epoch": best_epoch, "bad": bad, "history": hist_log,
                                "best_state": best_state}, f)
    if best_state is not None:
        net.load_state_dict(best_state)
    result = TrainResult(epochs_run=epoch, best_epoch=best_epoch, best_val_ndcg10=max(best, 0.0),
                         stopped_early=stopped, resumed_from=resumed_from,
                         seconds=round(time.monotonic() - t0, 1), history=hist_log)
    if workdir:
        save(model, workdir / "model.pt", result)
    return model, result


def save(model: SeqModel, path: Path, result: TrainResult | None = None) -> None:
    from mediarec.infra.atomic import atomic_open

    with atomic_open(path, "wb") as f:
        model._torch.save({"format": FORMAT, "n_items": model.n_items, "settings": asdict(model.settings),
                           "model": model.net.state_dict(),
                           "result": asdict(result) if result else None}, f)


def load(path: str | Path, device: str = "cpu") -> SeqModel:
    torch = check_device(device)
    ck = torch.load(Path(path), map_location=device, weights_only=False)
    if ck.get("format") != FORMAT:
        raise ModelError(f"{path}: a sequential model of another format; retrain it")
    s = SeqSettings(**{**ck["settings"], "device": device})
    net = _build_model(torch, ck["n_items"], s).to(torch.device(device))
    net.load_state_dict(ck["model"])
    return SeqModel(net, ck["n_items"], s, torch)


def main(argv: Sequence[str] | None = None) -> int:
    """A long benchmark run outside the CLI: ``python -m mediarec.index.seq FILE --workdir DIR``.

    Reads a sequence file, holds out each user's last item (test) and the one before it
    (validation), trains on the rest with checkpoints in ``DIR`` (rerun the same command to
    resume), and prints validation and test NDCG@10 / HR@10 with seen items excluded."""
    import argparse
    import sys

    from mediarec.catalog.loaders.sequences import read_sequences, sequence_catalog

    p = argparse.ArgumentParser(prog="python -m mediarec.index.seq")
    p.add_argument("sequences")
    p.add_argument("--workdir", required=True)
    defaults = asdict(SeqSettings())
    defaults.pop("ensemble")  # one model a run: an ensemble's members are runs by --seed
    for name, default in defaults.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(default) if default is not None else int,
                       default=default)
    a = p.parse_args(argv)
    s = SeqSettings(**{k: getattr(a, k) for k in defaults})
    cat = sequence_catalog("seq", read_sequences(a.sequences))
    index = {iid: i for i, iid in enumerate(cat.items)}
    seqs = read_sequences(a.sequences)
    users = list(seqs)
    full = [[index[x] for x in seqs[u]] for u in users]
    train_h = [h[:-2] for h in full]
    val_t = [h[-2] if len(h) >= 3 else -1 for h in full]
    fp = data_fingerprint(len(index), train_h, s)

    def log(m: str) -> None:
        print(time.strftime("%H:%M:%S ") + m, file=sys.stderr, flush=True)

    log(f"seq: {len(users)} users, {len(index)} items, fingerprint {fp}, settings {asdict(s)}")
    model, r = train(len(index), train_h, s, val_targets=val_t, workdir=a.workdir, progress=sys.stderr.isatty(),
                     log=log)
    rows = [i for i, h in enumerate(full) if len(h) >= 3]
    sc = model.score_histories([full[i][:-1] for i in rows])
    nd, hr = ndcg_hr_at(sc, np.asarray([full[i][-1] for i in rows]), [full[i][:-1] for i in rows])
    lat = []
    for i in rows[:200]:  # one user at a time, as a recommendation scores them
        t = time.perf_counter()
        model.score_histories([full[i][:-1]])
        lat.append(time.perf_counter() - t)
    import resource

    out = {"fingerprint": fp, "users": len(rows), "test_ndcg10": float(nd.mean()), "test_hr10": float(hr.mean()),
           "score_ms_p50": round(1000 * float(np.median(lat)), 2),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           **{k: v for k, v in asdict(r).items() if k != "history"}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def _positive_histories(catalog) -> dict[str, list[str]]:
    """{user: positive item ids oldest first}, ordered by (timestamp, position in the log)."""
    per: dict[str, list[tuple[float, int, str]]] = {}
    for pos, x in enumerate(catalog.interactions):
        if x.is_positive:
            per.setdefault(x.user, []).append((x.timestamp, pos, x.item))
    return {u: [i for _, _, i in sorted(v)] for u, v in per.items()}


def model_dir(home: str | Path, catalog_name: str, fingerprint: str) -> Path:
    from mediarec.infra.paths import safe_file_name

    return Path(home) / "seq" / safe_file_name(catalog_name) / fingerprint


class SeqScorer:
    """The sequential model as a scorer of a catalog: ``fit`` holds out each user's last positive
    as the validation target (early stopping only) and trains on the rest, or reuses the model
    stored under the same fingerprint; ``score_array`` scores every catalog item for a history."""

    def __init__(self, home: str | Path, settings: SeqSettings | None = None, name: str = "seq",
                 progress: bool = False, log: Callable[[str], None] | None = None,
                 summary: Callable[[str], None] | None = None):
        """``log``: a line per epoch; ``summary``: one line when a model is trained or reused."""
        self.home, self.settings, self.name = Path(home), settings or SeqSettings(), name
        self.progress, self.log, self.summary = progress, log, summary
        self.item_ids: list[str] = []
        self._index: dict[str, int] = {}
        self.model: SeqModel | None = None
        self.extra: dict = {}

    def fit(self, catalog, may_train: bool = True) -> bool:
        """Reuse the stored model of ``catalog`` or (``may_train``) train one; whether one is ready."""
        self.item_ids = list(catalog.items)
        self._index = {i: k for k, i in enumerate(self.item_ids)}
        hists = _positive_histories(catalog)
        train_h = [[self._index[i] for i in h[:-1]] for h in hists.values()]
        val_t = [self._index[h[-1]] if len(h) >= 2 else -1 for h in hists.values()]
        # a one-item user has no validation target: that item is training history
        train_h = [t if v >= 0 else [self._index[h[0]]] for t, v, h in zip(train_h, val_t, hists.values())]
        models, extras = [], []
        for member in self.settings.members():
            model, extra = self._fit_one(catalog.name, train_h, val_t, member, may_train)
            if model is None:
                self.model, self.extra = None, extra
                return False
            models.append(model)
            extras.append(extra)
        if len(models) == 1:
            self.model, self.extra = models[0], extras[0]
        else:  # the fingerprint (the learned stage's key) and the model paths name every member
            self.model = SeqEnsemble(models)
            self.extra = {"fingerprint": "+".join(e["fingerprint"] for e in extras),
                          "trained": any(e["trained"] for e in extras),
                          "model": ", ".join(e["model"] for e in extras), "members": extras}
        return True

    def _fit_one(self, catalog_name: str, train_h, val_t, settings: SeqSettings, may_train: bool):
        """(one model, its facts): stored under its fingerprint, or trained now; (None, facts) when
        none is stored and training is not allowed."""
        fp = data_fingerprint(len(self.item_ids), train_h, settings)
        where = model_dir(self.home, catalog_name, fp)
        stored = where / "model.pt"
        if stored.exists():
            if self.summary:
                self.summary(f"{self.name}: reusing the model trained on this catalog ({stored})")
            return load(stored, settings.device), {"fingerprint": fp, "trained": False, "model": str(stored)}
        if not may_train:
            return None, {"fingerprint": fp, "trained": False, "model": None}
        model, r = train(len(self.item_ids), train_h, settings, val_targets=val_t, workdir=where,
                         progress=self.progress, log=self.log)
        if self.summary:
            self.summary(f"{self.name}: trained {r.epochs_run - r.resumed_from} epochs"
                         + (f" (resumed after {r.resumed_from})" if r.resumed_from else "")
                         + f" in {r.seconds:.0f} s, best validation NDCG@10 {r.best_val_ndcg10:.4f} at epoch "
                         f"{r.best_epoch}" + (", stopped early" if r.stopped_early else "") + f"; stored in {where}")
        return model, {"fingerprint": fp, "trained": True, "model": str(stored), "epochs": r.epochs_run,
                       "best_epoch": r.best_epoch, "val_ndcg@10": r.best_val_ndcg10, "train_seconds": r.seconds}

    def _indices(self, history) -> list[int]:
        out = []
        for x in history:
            item = x if isinstance(x, str) else getattr(x, "item", getattr(x, "id", None))
            if isinstance(x, str) or getattr(x, "is_positive", True):
                k = self._index.get(item)
                if k is not None:
                    out.append(k)
        return out

    def score_array(self, history) -> np.ndarray:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call fit() first")
        return self.model.score_histories([self._indices(history)])[0].astype(np.float64)

    def score_many(self, histories) -> np.ndarray:
        """(len(histories), len(item_ids)) scores, in batches (the learned stage's training)."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: call fit() first")
        return self.model.score_histories([self._indices(h) for h in histories])

    def score(self, history, candidates: list[str] | None = None) -> dict[str, float]:
        s = self.score_array(history)
        if candidates is None:
            return dict(zip(self.item_ids, s.tolist()))
        return {c: float(s[self._index[c]]) for c in candidates if c in self._index}


# -- the model as a source of candidates and features for the product --------------------------
# Train by default from this many positive interactions on. Measured: on MovieLens-1M (1M
# interactions, 6,040 users) the model alone is far ahead of the learned stage (NDCG@10 0.1751 vs
# 0.1556, eval/results/ml-1m-lrurec-seq-79ep); ML-100k (100k interactions) is below the line (see
# eval/README.md, "The sequential model as a source"), and the demo's few hundred rows cannot
# train a transformer. Users with a history of at least two items must also number MIN_USERS.
MIN_INTERACTIONS = 200_000
MIN_USERS = 1_000
# ... and up to this many items. Training takes a softmax over every item at every position: a batch
# holds batch × max_len × items scores three times over (logits, softmax, gradient), 64 × 100 ×
# 25,000 × 4 B × 3 = 1.9 GB. At 100,000 items (a generated catalog of 979k interactions) that was
# a 12.3 GB peak and hours of CPU, against 4 min for the whole index without it
# (benchmarks/results/scale-100k-static-seqoff.json). `--seq on` still trains it there.
MAX_ITEMS = 25_000


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


class SeqSource:
    """Where a served catalog's sequential model comes from (:class:`mediarec.recommender.Recommender`
    asks it): ``mode`` "auto" trains it where the catalog is large enough (``MIN_INTERACTIONS``,
    ``MIN_USERS``), "on" always, "off" never. Without torch it gives none and says so once.
    ``status`` is one line for the result and ``mediarec index``."""

    def __init__(self, home: str | Path, mode: str = "auto", settings: SeqSettings | None = None,
                 progress: bool = False, log: Callable[[str], None] | None = None,
                 summary: Callable[[str], None] | None = None, may_train: bool = True):
        """``may_train`` False: only a stored model serves (``recommend`` and ``chat`` never spend
        the minutes a training takes; ``mediarec index`` trains)."""
        if mode not in ("auto", "on", "off"):
            raise ConfigError(f"sequential model: {mode!r}; use auto, on or off")
        self.home, self.mode, self.settings = Path(home), mode, settings or SeqSettings()
        self.progress, self.log, self.summary, self.may_train = progress, log, summary, may_train
        self.status = "sequential model off"

    def skip_reason(self, catalog) -> str | None:
        """Why ``catalog`` gets no sequential model (None: it gets one)."""
        if self.mode == "off":
            return "sequential model off"
        if not torch_available():
            return "sequential model skipped: torch is not installed (pip install 'mediarec[seq]')"
        if self.mode == "on":
            return None
        n = len(catalog.positives)
        if n < MIN_INTERACTIONS:
            return f"sequential model skipped: {n:,} interactions < {MIN_INTERACTIONS:,}"
        users = sum(1 for h in _positive_histories(catalog).values() if len(h) >= 2)
        if users < MIN_USERS:
            return f"sequential model skipped: {users:,} users with two or more items < {MIN_USERS:,}"
        if len(catalog.items) > MAX_ITEMS:
            return (f"sequential model skipped: {len(catalog.items):,} items > {MAX_ITEMS:,} (its softmax over every "
                    "item would take hours and GBs here; --seq on trains it anyway)")
        return None

    def model_for(self, catalog, train: bool, check_size: bool = True) -> SeqScorer | None:
        """The catalog's model, stored or (``train``) trained now; None when skipped or not trained
        yet. ``check_size`` False: the size was checked on the catalog this one is part of (the
        learned stage's held-out training catalog)."""
        reason = self.skip_reason(catalog) if check_size else None
        if self.mode == "off" or not torch_available():
            if check_size:
                self.status = reason
            return None
        # Too small for "auto": no training, but a model stored by `--seq on` still serves (its
        # learned model was trained with it).
        scorer = SeqScorer(self.home, self.settings, progress=self.progress, log=self.log, summary=self.summary)
        if not scorer.fit(catalog, may_train=train and self.may_train and reason is None):
            if check_size:
                self.status = reason or "sequential model not trained yet (`mediarec index` trains it)"
            return None
        if check_size:
            self.status = (f"sequential model: {'trained' if scorer.extra['trained'] else 'stored'}, "
                           f"{scorer.extra['model']}")
        return scorer
