"""IPython extension entry point: ``%load_ext aca_sessions`` enables the ``%%aca`` magic."""

from aca_kernel.notebook import load_ipython_extension, unload_ipython_extension

__all__ = ["load_ipython_extension", "unload_ipython_extension"]
