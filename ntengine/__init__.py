"""ntengine: fast, faithful inference for Nucleotide Transformer DNA language models.

`import ntengine` stays light: the tokenizer needs only numpy, and torch is imported
the first time `compile`, `Engine` or `NTConfig` is touched.
"""

__version__ = "0.1.0"

from ntengine.tokenizer import Tokenizer  # noqa: E402  (numpy-only, cheap)

_LAZY = {
    "compile": ("ntengine.engine", "compile"),
    "Engine": ("ntengine.engine", "Engine"),
    "NTConfig": ("ntengine.config", "NTConfig"),
    "info": ("ntengine.info", "info"),
}

__all__ = ["Tokenizer", "compile", "Engine", "NTConfig", "info", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'ntengine' has no attribute {name!r}")
