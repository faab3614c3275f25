"""The file browser's parts, behind :mod:`aca_kernel.widgets` (the public facade)."""
