#!/usr/bin/env python3
"""Set up `.venv/` and run the main job or the tests, on a machine with only Python 3.11+ and pip.

    python3 tasks.py demo    # install, pull the models, recommend for a demo user with the local LLM
    python3 tasks.py test    # install with the test and train extras and run the whole test suite
    python3 tasks.py test --fast   # the same without the llm, slow and server tiers (the inner loop)

Anything after `test` goes to pytest (`python3 tasks.py test --fast -x tests/test_cli.py`).
The tests run on two pytest-xdist workers (`-n 0`: in one process).

llama-cpp-python is built from source. Its default build crashes on CPUs with AMX on the first
decode (llama.cpp issue 20824), so it is built for AVX2/AVX-512 without AMX and without -march=native
(override with CMAKE_ARGS). pip caches the built wheel, so only the first install takes minutes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
SAFE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=ON -DGGML_AMX_INT8=OFF"


def run(*cmd: str, env: dict | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, **(env or {})})


def setup(extras: str = "") -> None:
    if sys.version_info < (3, 11):
        sys.exit("mediarec needs Python 3.11 or newer")
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    py = str(BIN / "python")
    env = {"CMAKE_ARGS": os.environ.get("CMAKE_ARGS", SAFE_CMAKE_ARGS)}
    # The editable install follows the source by itself: pip runs again only when what it installs
    # from changes (pyproject.toml, the extras, CMAKE_ARGS), not on every `tasks.py test`.
    wanted = hashlib.sha256(f"{(ROOT / 'pyproject.toml').read_bytes()!r}|{extras}|{env['CMAKE_ARGS']}".encode()).hexdigest()
    stamp = VENV / ".mediarec-installed"
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        return
    run(py, "-m", "pip", "install", "--quiet", "--upgrade", "pip", env=env)
    run(py, "-m", "pip", "install", "--quiet", "-e", f".{extras}", env=env)
    stamp.write_text(wanted + "\n")


def main(argv: list[str]) -> int:
    task = argv[0] if argv else "help"
    if task == "demo":
        setup()
        run(str(BIN / "mediarec"), "models", "pull")
        run(str(BIN / "mediarec"), "recommend", "--dataset", "demo", "--user", "alice", "-k", "10", *argv[1:])
    elif task == "test":
        setup("[test,train]")
        run(str(BIN / "mediarec"), "models", "pull", "minilm-l6-int8", "smollm2-135m", "--quiet",
            env={"MEDIAREC_HOME": str(ROOT / ".test-home")})
        args = argv[1:]
        if "--fast" in args:  # the tiers are markers (pyproject.toml, tests/conftest.py)
            args = [a for a in args if a != "--fast"] + ["-m", "not llm and not slow and not server"]
        env = {"MEDIAREC_TEST_HOME": str(ROOT / ".test-home")}
        if not any(a.startswith(("-n", "--numprocesses")) or a == "no:xdist" for a in args):
            # Two pytest-xdist workers, tests handed out one at a time (worksteal: a big file is
            # split between them), each worker on one BLAS/OpenMP thread so the two do not fight for
            # the two cores (README, "Tests in parallel"). `-n 0` runs in one process.
            args = ["-n", str(min(2, os.cpu_count() or 1)), "--dist", "worksteal", *args]
            env |= {k: os.environ.get(k, "1") for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        run(str(BIN / "python"), "-m", "pytest", "-q", *args, env=env)
    else:
        print(__doc__)
        return 0 if task == "help" else 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode)
