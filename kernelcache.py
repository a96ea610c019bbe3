"""Where Numba keeps its compiled kernels: a folder keyed by the engine's source.

Why: Numba's on-disk cache checks the file of the function it caches, not the files of the
functions it calls and inlines. hotctx.hot_chunk inlines pipeline, books, l2wire, triangles
and rings; after an edit to one of those (or a `git pull`), the cached hot_chunk would keep
running the old code without a word. Seen here: a kernel that wrote a new signal field
kept running its cached predecessor, which did not (docs/design.md 11). So the cache lives in
`.numba_cache/<hash of every engine module's source>/`: any edit to any engine module starts
a fresh cache (the next start compiles every kernel again, as on a fresh clone), and the
older folders are pruned.

Call `use_source_keyed_cache()` before anything imports numba (run.py does it first; so do
tests/conftest.py and the benchmarks that import kernels). A NUMBA_CACHE_DIR set in the
environment is left alone.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CACHE_ROOT = ROOT / ".numba_cache"
KEEP = 3          # cache folders kept (the newest), so switching between two versions is cheap


def source_key() -> str:
    """sha1 of every engine module at the repository's top level (names and contents)."""
    h = hashlib.sha1()
    for p in sorted(ROOT.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def use_source_keyed_cache() -> str:
    """Point NUMBA_CACHE_DIR at this source's folder (unless set); returns the folder."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    folder = CACHE_ROOT / source_key()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder)
        olds = sorted((p for p in CACHE_ROOT.iterdir() if p.is_dir() and p != folder),
                      key=lambda p: p.stat().st_mtime, reverse=True)
        for p in olds[KEEP - 1:]:
            shutil.rmtree(p, ignore_errors=True)
    except OSError:
        return ""            # a read-only checkout: Numba falls back to its own cache places
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    return str(folder)
