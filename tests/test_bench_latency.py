"""profiles/bench_latency.py --patch-ab: the diff is applied to a copy of the tree, never to the
tree itself; the runs alternate a, b, a, b with b on the copy; a diff that does not apply is a
clear error and nothing runs. The engine runs are replaced by a recorder (the benchmark itself
is run by hand, profiles/README.md).

Run: `python -m pytest -q tests/test_bench_latency.py`.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "profiles"))
import bench_latency as bl  # noqa: E402

DIFF = """A header line, as profiles/patches/ diffs have.

diff --git a/mod.py b/mod.py
--- a/mod.py
+++ b/mod.py
@@ -1,2 +1,2 @@
 X = 1
-Y = 2
+Y = 3
"""


@pytest.fixture
def tree(tmp_path, monkeypatch):
    t = tmp_path / "tree"
    (t / "profiles" / "results").mkdir(parents=True)
    (t / "mod.py").write_text("X = 1\nY = 2\n")
    (t / ".numba_cache").mkdir()
    (t / ".numba_cache" / "big.nbc").write_text("cache")
    monkeypatch.setattr(bl, "ROOT", t)
    return t


def _args(diff: Path) -> types.SimpleNamespace:
    return types.SimpleNamespace(patch_ab=str(diff), tag="", rounds=2, seconds=1.0, extra=[])


def test_patch_ab_runs_b_on_a_patched_copy(tree, tmp_path, monkeypatch):
    diff = tmp_path / "y3.diff"
    diff.write_text(DIFF)
    calls = []

    def fake_run(a, tag="", engine_over=None, sim_over=None, root=None):
        calls.append((tag, root, (root / "mod.py").read_text(), (root / ".numba_cache").exists()))
        return {"triangles": 3, "status": {"FILLED": 3},
                "us": {"tick_to_fire": {"n": 3, "p50": 50.0, "p90": 60.0, "p99": 70.0}}}

    monkeypatch.setattr(bl, "run", fake_run)
    assert bl.run_patch_ab(_args(diff)) == 0
    assert [c[0] for c in calls] == ["ab_y3_a_1", "ab_y3_b_1", "ab_y3_a_2", "ab_y3_b_2"]
    a_roots = {c[1] for c in calls[0::2]}
    b_roots = {c[1] for c in calls[1::2]}
    assert a_roots == {tree} and len(b_roots) == 1 and tree not in b_roots
    assert all(c[2] == "X = 1\nY = 2\n" for c in calls[0::2])      # A: the tree as it is
    assert all(c[2] == "X = 1\nY = 3\n" for c in calls[1::2])      # B: patched
    assert not any(c[3] for c in calls[1::2])                       # caches not copied
    assert (tree / "mod.py").read_text() == "X = 1\nY = 2\n"        # the tree untouched
    assert not b_roots.pop().exists()                               # the copy removed
    summary = json.loads((tree / "profiles" / "results" / "latency_ab_y3_summary.json").read_text())
    assert summary["patch"] == "y3.diff" and "+Y = 3" in summary["patch_text"]
    assert [(r["variant"], r["round"]) for r in summary["rows"]] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert summary["rows"][1]["tick_to_fire"]["p50"] == 50.0


def test_patch_ab_refuses_a_diff_that_does_not_apply(tree, tmp_path, monkeypatch, capsys):
    diff = tmp_path / "stale.diff"
    diff.write_text(DIFF.replace("-Y = 2", "-Y = 5"))
    monkeypatch.setattr(bl, "run", lambda *a, **k: pytest.fail("nothing may run"))
    assert bl.run_patch_ab(_args(diff)) == 2
    assert "stale.diff does not apply to this tree" in capsys.readouterr().out
    assert (tree / "mod.py").read_text() == "X = 1\nY = 2\n"
    missing = tmp_path / "none.diff"
    assert bl.run_patch_ab(_args(missing)) == 2


def test_patch_ab_applies_to_the_copy_inside_another_repository(tree, tmp_path, monkeypatch):
    """A temp folder inside some git checkout: git apply must still patch the copy."""
    outer = tmp_path / "outer"
    outer.mkdir()
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    monkeypatch.setattr(tempfile, "tempdir", str(outer))
    diff = tmp_path / "y3.diff"
    diff.write_text(DIFF)
    seen = []

    def fake_run(a, tag="", engine_over=None, sim_over=None, root=None):
        seen.append((root / "mod.py").read_text())
        return {"triangles": 0, "status": {}, "us": {}}

    monkeypatch.setattr(bl, "run", fake_run)
    assert bl.run_patch_ab(_args(diff)) == 0
    assert seen[1] == seen[3] == "X = 1\nY = 3\n" and seen[0] == "X = 1\nY = 2\n"
