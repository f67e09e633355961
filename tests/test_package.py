"""The package works as a library: it imports without Jupyter and its modules equal the notebooks."""
from __future__ import annotations

import subprocess
import sys


def test_imports_without_jupyter():
    # A fresh interpreter in which importing IPython, nbdev or matplotlib would fail.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('IPython', 'ipykernel', 'nbdev', 'matplotlib', 'jupyter_core'):\n"
        "            raise ImportError(f'blocked {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import torch\n"
        "from transformer_lit.attention import scaled_dot_product_attention, causal_mask, padding_mask\n"
        "q = torch.randn(2, 4, 8)\n"
        "out, w = scaled_dot_product_attention(q, q, q, mask=causal_mask(4))\n"
        "assert out.shape == (2, 4, 8) and w.shape == (2, 4, 4)\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_version():
    import transformer_lit
    assert isinstance(transformer_lit.__version__, str)
