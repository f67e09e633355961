"""Keep the book's execution cache honest: drop a notebook's cached outputs when what it runs changed.

jupyter-book's `execute_notebooks: cache` keys each executed notebook on its own code cells. But a
chapter also runs code it imports from `transformer_lit` (chapter 11 imports what chapters 1-10 export),
reads the shipped corpus, and behaves differently in quick mode (`TRANSFORMER_LIT_QUICK`). A change to
any of these would leave the book serving old outputs and old asserted figures.

Before each build this script computes, for every notebook, a key over

- the source of every `transformer_lit` module the notebook imports, followed transitively through the
  modules' own imports (a notebook that imports `gpt` depends on `encoder`, `multi_head`, ...),
- the package's data files (the default corpus), and
- the value of `TRANSFORMER_LIT_QUICK`,

and compares it with the key recorded at the last build (`<cache>/transformer_lit_keys.json`). Where
the key changed, the notebook's cache record is removed, so the build executes it again.

    python tools/book_cache.py [--cache _build/.jupyter_cache]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "transformer_lit"
_NB_IMPORT = re.compile(r"(?:from|import)\s+transformer_lit\.(\w+)")
_MOD_IMPORT = re.compile(r"^\s*from\s+(?:\.|transformer_lit\.)(\w+)\s+import", re.M)


def module_deps(name: str, seen: set[str] | None = None) -> set[str]:
    "`name` and every `transformer_lit` module it imports, transitively."
    seen = set() if seen is None else seen
    path = PKG / f"{name}.py"
    if name in seen or not path.exists():
        return seen
    seen.add(name)
    for dep in _MOD_IMPORT.findall(path.read_text(encoding="utf-8")):
        module_deps(dep, seen)
    return seen


def notebook_modules(nb_path: Path) -> set[str]:
    "The `transformer_lit` modules a notebook's code cells import, with their own imports."
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    mods: set[str] = set()
    for name in _NB_IMPORT.findall(code):
        module_deps(name, mods)
    return mods


def dependency_key(nb_path: Path) -> str:
    h = hashlib.sha256()
    for name in sorted(notebook_modules(nb_path)):
        h.update(name.encode() + b"\0" + (PKG / f"{name}.py").read_bytes())
    for data in sorted((PKG / "data").glob("*")) if (PKG / "data").is_dir() else []:
        h.update(data.name.encode() + b"\0" + data.read_bytes())
    h.update(b"quick=" + os.environ.get("TRANSFORMER_LIT_QUICK", "").encode())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=str(ROOT / "_build" / ".jupyter_cache"))
    args = ap.parse_args(argv)
    cache_dir = Path(args.cache)
    keys_file = cache_dir / "transformer_lit_keys.json"
    old = json.loads(keys_file.read_text()) if keys_file.exists() else {}
    new = {str(p.relative_to(ROOT)): dependency_key(p) for p in sorted((ROOT / "nbs").glob("*.ipynb"))}
    stale = [nb for nb, key in new.items() if old.get(nb) != key]
    if cache_dir.exists():
        from jupyter_cache import get_cache          # a dependency of jupyter-book, present in the venv
        cache = get_cache(str(cache_dir))
        for nb in stale:
            try:
                record = cache.match_cache_file(str(ROOT / nb))
            except KeyError:
                continue                             # not cached: the build executes it anyway
            cache.remove_cache(record.pk)
            print(f"book_cache: {nb}: its imports, data or mode changed; it will be executed again")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = keys_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(new, indent=1, sort_keys=True))
    os.replace(tmp, keys_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
