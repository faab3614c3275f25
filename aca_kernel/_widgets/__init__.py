"""Private modules behind :mod:`aca_kernel.widgets` (the public facade)."""
