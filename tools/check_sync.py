"""Fail when the package or the notebooks are out of date, without touching either.

Copies the notebooks, the package and the nbdev configuration into a scratch folder, runs
`nbdev-export` and `nbdev-clean` there, and reports every file they would change, with a short diff:
a changed module means `transformer_lit/` was edited by hand or not re-exported; a changed notebook
means it was saved with outputs or metadata. Your working tree is never written: an unsaved edit to a
module or a notebook's kept outputs survive running the tests. `make export` and `make clean-nbs` are
the commands that write.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COPY = ["pyproject.toml", "nbs", "transformer_lit"]


def snapshot(root: Path) -> dict[str, bytes]:
    files = [*root.glob("nbs/*.ipynb"), *root.glob("transformer_lit/*.py")]
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def short_diff(name: str, a: bytes, b: bytes, limit: int = 12) -> str:
    lines = list(difflib.unified_diff(a.decode(errors="replace").splitlines(), b.decode(errors="replace").splitlines(),
                                      f"{name} (yours)", f"{name} (regenerated)", lineterm="", n=1))
    more = f"\n    ... {len(lines) - limit} more diff lines" if len(lines) > limit else ""
    return "\n".join("    " + line for line in lines[:limit]) + more


def main() -> int:
    problems = []
    if (ROOT / "settings.ini").exists():
        problems.append("settings.ini exists: nbdev 3 reads [tool.nbdev] in pyproject.toml and refuses settings.ini")
    if (ROOT / "nbs" / "index.ipynb").exists():
        problems.append("nbs/index.ipynb exists: nbdev-prepare would then require Quarto; give the chapter another name")
    before = snapshot(ROOT)
    for name, data in sorted(before.items()):      # nbdev-clean keeps outputs (clear_all is off to keep cell tags)
        if name.endswith(".ipynb") and any(c.get("outputs") or c.get("execution_count")
                                           for c in json.loads(data)["cells"] if c["cell_type"] == "code"):
            problems.append(f"{name}: notebook saved with outputs (run `make clean-nbs`)")
    with tempfile.TemporaryDirectory(prefix="check_sync_") as tmp:
        scratch = Path(tmp)
        for name in COPY:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, scratch / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
            else:
                shutil.copy2(src, scratch / name)
        for tool in ("nbdev-export", "nbdev-clean"):
            subprocess.run([str(BIN / tool)], cwd=scratch, check=True)
        after = snapshot(scratch)
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            if name.endswith(".py"):
                kind, fix = "module differs from what nbdev-export writes", "run `make export`"
            else:
                kind, fix = "notebook not clean", "run `make clean-nbs`"
            problems.append(f"{name}: {kind} ({fix})\n"
                            + short_diff(name, before.get(name, b""), after.get(name, b"")))
    for p in problems:
        print(f"check_sync: {p}", file=sys.stderr)
    if not problems:
        digest = hashlib.sha256(b"".join(before[k] for k in sorted(before))).hexdigest()[:12]
        print(f"check_sync: {len(before)} files ({digest}); package equals nbdev-export, notebooks clean")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
