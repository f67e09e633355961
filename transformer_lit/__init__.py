"""transformer-lit: the Transformer, built chapter by chapter.

Each module is exported from the notebook of the same chapter in `nbs/`.
"""
__version__ = "0.1.0"
