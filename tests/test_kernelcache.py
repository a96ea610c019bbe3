"""Tests of kernelcache.py: the cold-cache check, and that what a worker compiles is exactly
what the engine's entry kernels use (else a cold start would compile both).

The second test runs run.warm_up in-process (loads from the cache the earlier tests filled, or
compiles), then calls every worker group: a group whose calls add a specialisation to any
kernel has types the engine never uses, and fails.
Run: python -m pytest -q tests/test_kernelcache.py
"""
import os
import subprocess
import sys
from pathlib import Path

import kernelcache

ROOT = Path(__file__).resolve().parent.parent
KERNEL_MODULES = ("books", "hotctx", "l2wire", "pipeline", "privwire", "rings", "slots", "topics",
                  "triangles", "wsread")


FRESH_SCRIPT = r"""
import importlib, sys
from numba import njit
from numba.core.registry import CPUDispatcher
import hotctx, pipeline, kernelcache, run

# Compile the entry kernels and every caller of a worker group's kernels afresh (no cache),
# so each callee is compiled or loaded with exactly the signature its caller uses and
# registered under it; the groups' own kernels stay as they are (cached).
def fresh(mod, name):
    d = getattr(mod, name)
    opts = {k: v for k, v in d.targetoptions.items() if k not in ("cache", "nopython")}
    setattr(mod, name, njit(d.py_func, cache=False, **opts))
for mod, name in ((hotctx, "hot_chunk"), (hotctx, "process_chunk"), (hotctx, "_apply_frame"),
                  (hotctx, "_decide_window"), (pipeline, "apply_l2"), (pipeline, "decide_l2"),
                  (hotctx, "hot_reeval"), (pipeline, "on_reeval"), (hotctx, "hot_route_fill"),
                  (pipeline, "hot_snapshot"), (pipeline, "on_snapshot")):
    fresh(mod, name)
sh = kernelcache.synthetic_shared()
run.warm_up(sh)

def counts():
    out = {}
    for name in %r:
        for attr, v in vars(importlib.import_module(name)).items():
            if isinstance(v, CPUDispatcher):
                out[name + "." + attr] = len(v.overloads)
    return out
before = counts()
assert sum(before.values()) > 40, ("the dispatcher scan found almost nothing", before)
bad = {}
for g in [g for plan in kernelcache.GROUPS for g, _ in plan]:
    kernelcache.compile_group(g, sh)
    after = counts()
    extra = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    if extra:
        bad[g] = extra
    before = after
print("EXTRA", bad)
sys.exit(3 if bad else 0)
""" % (KERNEL_MODULES,)


def test_is_cold_when_cache_dir_empty_then_true(tmp_path):
    code = "import kernelcache, sys; sys.exit(0 if kernelcache.is_cold() else 3)"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr


def test_compile_group_when_callers_compiled_afresh_then_adds_no_specialisation():
    """~15 s: the glue kernels compile (their callees load from the cache)."""
    groups = [g for plan in kernelcache.GROUPS for g, _ in plan]
    assert len(groups) == kernelcache.N_GROUPS == len(set(groups))
    r = subprocess.run([sys.executable, "-c", FRESH_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "EXTRA {}" in r.stdout
