"""Give transformers' MambaForCausalLM the fast CPU decode step once abcmamba is imported.

``import abcmamba`` must stay cheap (the ABC tools import no torch), so the
class is patched only when something imports transformers' Mamba module: at
once if that has happened, else through a finder on ``sys.meta_path`` that
patches right after the module runs. The patched ``forward`` is a trampoline
that imports :mod:`abcmamba.kernels.decode` on its first call, because that
module imports transformers' Mamba module itself (patching runs mid-import).
"""

from __future__ import annotations

import functools
import importlib.abc
import sys

MAMBA_MODULE = "transformers.models.mamba.modeling_mamba"


def patch(cls: type) -> None:
    """Route ``cls.forward`` through abcmamba.kernels.decode.forward (idempotent)."""
    stock = cls.forward
    if hasattr(stock, "_abcmamba_stock"):
        return

    @functools.wraps(stock)  # generate reads forward's signature
    def forward(self, *args, **kwargs):
        from abcmamba.kernels import decode

        return decode.forward(stock, self, *args, **kwargs)

    forward._abcmamba_stock = stock
    cls.forward = forward


def unpatch(cls: type) -> None:
    """Give ``cls`` its stock forward back."""
    stock = getattr(cls.forward, "_abcmamba_stock", None)
    if stock is not None:
        cls.forward = stock


class _AfterMambaImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loader of MAMBA_MODULE to patch afterwards."""

    def find_spec(self, name, path, target=None):
        if name != MAMBA_MODULE:
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:  # a look-up before transformers.models.mamba is importable: wait
            return None
        sys.meta_path.remove(self)  # one module, once
        exec_module = spec.loader.exec_module

        def exec_then_patch(module):
            exec_module(module)
            patch(module.MambaForCausalLM)

        spec.loader.exec_module = exec_then_patch
        return spec


def install_when_imported() -> None:
    """Patch MambaForCausalLM now if transformers' Mamba is loaded, else on its import."""
    if MAMBA_MODULE in sys.modules:
        patch(sys.modules[MAMBA_MODULE].MambaForCausalLM)
    elif not any(isinstance(f, _AfterMambaImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterMambaImport())
