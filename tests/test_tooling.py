"""The project's own tools: the lock installs off this machine, the sync check writes nothing, and the
book's execution cache is dropped when what a notebook imports (or the mode) changes."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_lock_pins_public_versions():
    "A local version label (torch's '+cpu') exists on some mirrors only: pip fails on it elsewhere."
    labelled = [f"{n}=={v}" for n, v in _lock().items() if "+" in v]
    assert not labelled, f"requirements.lock pins local version labels: {labelled}"


def test_lower_bounds_are_versions_we_ran():
    "Each dependency's lower bound in pyproject.toml has the major.minor of the version the lock tests."
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _lock()
    deps = meta["dependencies"] + [d for ds in meta["optional-dependencies"].values() for d in ds]
    for dep in deps:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", dep)
        assert m, f"{dep}: every dependency needs a lower bound"
        name, bound = re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(2)
        assert name in pins, f"{name} is a dependency but not in requirements.lock"
        assert pins[name].split(".")[:2] == bound.split(".")[:2], \
            f"{name}: pyproject says >={bound}, but the book is tested with {pins[name]}"
    assert meta["requires-python"] == ">=3.11", meta["requires-python"]
    assert "3.11" in (ROOT / "requirements.lock").read_text().split("\n", 3)[1]


def _copy_project(dst: Path) -> Path:
    for name in ("pyproject.toml", "nbs", "transformer_lit", "tools"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        else:
            shutil.copy2(src, dst / name)
    return dst


def test_check_sync_reports_and_writes_nothing(tmp_path):
    "A hand edit of a module and a notebook with outputs are reported; neither file is touched."
    proj = _copy_project(tmp_path)
    mod = proj / "transformer_lit" / "attention.py"
    mod.write_text(mod.read_text() + "\n# an unsaved idea\n")
    nb_path = proj / "nbs" / "01_attention.ipynb"
    nb = json.loads(nb_path.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["kept output\n"]}]
    nb_path.write_text(json.dumps(nb, indent=1))
    before = {p: p.read_bytes() for p in (mod, nb_path)}
    run = subprocess.run([sys.executable, str(proj / "tools" / "check_sync.py")], capture_output=True, text=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "transformer_lit/attention.py: module differs" in run.stderr
    assert "nbs/01_attention.ipynb: notebook not clean" in run.stderr
    assert {p: p.read_bytes() for p in before} == before, "check_sync changed the working tree"


def test_check_sync_passes_on_a_clean_copy(tmp_path):
    proj = _copy_project(tmp_path)
    run = subprocess.run([sys.executable, str(proj / "tools" / "check_sync.py")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def _load_book_cache(proj: Path):
    spec = importlib.util.spec_from_file_location("book_cache_under_test", proj / "tools" / "book_cache.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_book_cache_drops_notebooks_whose_imports_or_mode_changed(tmp_path, monkeypatch):
    jupyter_cache = pytest.importorskip("jupyter_cache")
    (tmp_path / "proj").mkdir()
    proj = _copy_project(tmp_path / "proj")
    book_cache = _load_book_cache(proj)
    cache_dir = tmp_path / "cache"
    cache = jupyter_cache.get_cache(str(cache_dir))
    nb1, nb4 = proj / "nbs" / "01_attention.ipynb", proj / "nbs" / "04_positional_encoding.ipynb"

    def cached() -> set[str]:
        found = set()
        for nb in (nb1, nb4):
            try:
                cache.match_cache_file(str(nb))
                found.add(nb.name)
            except KeyError:
                pass
        return found

    def fill():
        for nb in (nb1, nb4):
            if nb.name not in cached():
                cache.cache_notebook_file(str(nb), check_validity=False)

    monkeypatch.delenv("TRANSFORMER_LIT_QUICK", raising=False)
    fill()
    book_cache.main(["--cache", str(cache_dir)])          # first run: no keys recorded, every record dropped
    assert cached() == set()
    fill()
    book_cache.main(["--cache", str(cache_dir)])          # nothing changed: records stay
    assert cached() == {nb1.name, nb4.name}
    mh = proj / "transformer_lit" / "multi_head.py"       # chapter 4 imports multi_head, chapter 1 does not
    mh.write_text(mh.read_text() + "\n# changed\n")
    book_cache.main(["--cache", str(cache_dir)])
    assert cached() == {nb1.name}
    fill()
    att = proj / "transformer_lit" / "attention.py"       # multi_head imports attention: chapter 4 depends on it
    att.write_text(att.read_text() + "\n# changed\n")  # (chapter 1 writes attention.py: its own cells key it)
    book_cache.main(["--cache", str(cache_dir)])
    assert cached() == {nb1.name}
    fill()
    book_cache.main(["--cache", str(cache_dir)])
    monkeypatch.setenv("TRANSFORMER_LIT_QUICK", "1")     # another mode: everything runs again
    book_cache.main(["--cache", str(cache_dir)])
    assert cached() == set()
