"""The "ACA Sessions" Jupyter kernel: an IPython kernel whose cells run in an ACA dynamic session."""

from __future__ import annotations

from typing import Any

__all__ = ["ACAKernel"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m aca_kernel.kernel.install` does not import ipykernel.
    if name == "ACAKernel":
        from .kernel import ACAKernel

        return ACAKernel
    raise AttributeError(name)
