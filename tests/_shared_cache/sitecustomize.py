"""Test-only, in the processes a test run starts (this folder is on their PYTHONPATH): when
``mediarec.rank.learned`` and ``mediarec.index.embeddings`` are imported, their train and embed
reuse what the session has already computed (shared_cache.py says why and how). A background job
(``python -m mediarec.app.background``) started with MEDIAREC_TEST_PAUSE_JOB in its environment
stops itself before it does anything, for a test to look at the state while it is pending
(test_update.py; a SIGSTOP sent after ``mediarec add`` returned raced the job)."""

import importlib.abc
import importlib.machinery
import os
import signal
import sys

if os.environ.get("MEDIAREC_TEST_PAUSE_JOB") and sys.orig_argv[1:3] == ["-m", "mediarec.app.background"]:
    os.kill(os.getpid(), signal.SIGSTOP)  # the test resumes it (SIGCONT) or kills it

if os.environ.get("TESTS_SHARED_CACHE_DIR"):

    def _learned(module):
        import shared_cache

        module.train = shared_cache.train_once(module.train)

    def _embeddings(module):
        import shared_cache

        cls = module.MiniLMEmbeddingFunction
        cls.embed = shared_cache.embed_once(cls.embed)

    _PATCH = {"mediarec.rank.learned": _learned, "mediarec.index.embeddings": _embeddings}

    class _PatchOnImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in _PATCH:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return None
            run = spec.loader.exec_module

            def exec_module(module, run=run):
                run(module)
                _PATCH[name](module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _PatchOnImport())
