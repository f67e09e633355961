"""Fail when the package or the notebooks are out of date.

Runs `nbdev-export` and `nbdev-clean` and reports every file they change: a changed module means
`transformer_lit/` was edited by hand or not re-exported; a changed notebook means it was saved with
outputs or metadata. Both tools rewrite the files in place, so after a failure the fix is already in
your working tree: review it and commit it.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def snapshot() -> dict[str, str]:
    files = [*ROOT.glob("nbs/*.ipynb"), *ROOT.glob("transformer_lit/*.py")]
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def main() -> int:
    problems = []
    if (ROOT / "settings.ini").exists():
        problems.append("settings.ini exists: nbdev 3 reads [tool.nbdev] in pyproject.toml and refuses settings.ini")
    if (ROOT / "nbs" / "index.ipynb").exists():
        problems.append("nbs/index.ipynb exists: nbdev-prepare would then require Quarto; give the chapter another name")
    before = snapshot()
    for tool in ("nbdev-export", "nbdev-clean"):
        subprocess.run([str(BIN / tool)], cwd=ROOT, check=True)
    after = snapshot()
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            kind = "module out of sync with its notebook" if name.endswith(".py") else "notebook not clean"
            problems.append(f"{name}: {kind} (fixed in place by nbdev-export/nbdev-clean; review and commit)")
    for p in problems:
        print(f"check_sync: {p}", file=sys.stderr)
    if not problems:
        print(f"check_sync: {len(after)} files; package equals nbdev-export, notebooks clean")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
