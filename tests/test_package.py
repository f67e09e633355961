"""The package works as a library: every module imports without Jupyter, plotting or transformers, and
the version is the one the installed metadata declares."""
from __future__ import annotations

import importlib.metadata
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import transformer_lit

ROOT = Path(__file__).resolve().parent.parent
# Imported only inside the functions that need them (plots, Hugging Face interop, notebooks).
BLOCKED = ("IPython", "ipykernel", "nbdev", "matplotlib", "jupyter_core", "transformers")


def _modules() -> list[str]:
    "Every module of the package, found on disk (not a hand-written list that could fall behind)."
    return sorted(f"transformer_lit.{m.name}" for m in pkgutil.iter_modules(transformer_lit.__path__))


def test_every_module_imports_without_jupyter_plotting_or_transformers():
    modules = _modules()
    assert {"transformer_lit.attention", "transformer_lit.tokenizer", "transformer_lit.training", "transformer_lit.gpt",
            "transformer_lit.cli"} <= set(modules)
    # A fresh interpreter in which importing any of BLOCKED fails, as on a server without them.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {BLOCKED!r}:\n"
        "            raise ImportError(f'blocked {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import importlib\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"leaked = sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r})\n"
        "assert not leaked, leaked\n"
        "import torch\n"
        "from transformer_lit.attention import scaled_dot_product_attention, causal_mask\n"
        "from transformer_lit.gpt import GPT, GPTConfig, generate\n"
        "q = torch.randn(2, 4, 8)\n"
        "out, w = scaled_dot_product_attention(q, q, q, mask=causal_mask(4))\n"
        "assert out.shape == (2, 4, 8) and w.shape == (2, 4, 4)\n"
        "m = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))\n"
        "assert generate(m, [1, 2], 3, temperature=0).shape == (5,)\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_version():
    v = transformer_lit.__version__
    # PEP 440: release segments, optional pre/post/dev parts (what pip and PyPI accept)
    assert re.fullmatch(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", v), v
    # The tests run against this checkout, and its installed metadata declares the same version
    # (pyproject reads it from transformer_lit.__version__; a stale install shows up here).
    assert Path(transformer_lit.__file__).resolve().is_relative_to(ROOT), transformer_lit.__file__
    assert importlib.metadata.version("transformer-lit") == v


# Chapter order is import order (CONTRIBUTING.md): every module of the package, in the order the book builds it.
IMPORT_ORDER = ["attention", "self_attention", "multi_head", "positional", "encoder", "decoder", "tokenizer",
                "training", "checkpoint", "token_file", "parallel", "gpt", "hf", "cli", "llama", "assistant",
                "preference", "chat", "deepseek", "grpo", "reasoning", "paged", "serving", "server"]


def test_import_order_lists_every_module():
    root = Path(transformer_lit.__file__).parent
    modules = {f.stem for f in root.glob("*.py") if not f.name.startswith("_")}
    assert modules == set(IMPORT_ORDER), (sorted(modules - set(IMPORT_ORDER)), sorted(set(IMPORT_ORDER) - modules))


def test_nothing_imports_forward():
    "No module imports a later chapter's module, at the top or inside a function."
    root = Path(transformer_lit.__file__).parent
    late = []
    for name in IMPORT_ORDER:
        src = (root / f"{name}.py").read_text(encoding="utf-8")
        for dep in re.findall(r"^\s*from (?:\.|transformer_lit\.)(\w+) import", src, flags=re.M):
            if dep in IMPORT_ORDER and IMPORT_ORDER.index(dep) > IMPORT_ORDER.index(name):
                late.append(f"{name} imports {dep}")
    assert not late, late


def test_every_module_stays_small():
    "One job per module: every module of the package (nbdev's generated index aside) holds at most 700 lines."
    root = Path(transformer_lit.__file__).parent
    sizes = {f.stem: len(f.read_text(encoding="utf-8").splitlines()) for f in root.glob("*.py") if f.name != "_modidx.py"}
    assert len(sizes) >= 25, sorted(sizes)
    big = {m: n for m, n in sizes.items() if n > 700}
    assert not big, big
