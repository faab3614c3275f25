"""Run inside every session kernel at start (``--IPKernelApp.exec_files``); not imported by the host.

It makes the kernel report the last expression's value the way the service types ``result``:

* an ``application/vnd.aca.value+json`` formatter puts ``{"value": v}`` in ``execute_result`` for int, float,
  bool, str and numpy scalars (``.item()``); NaN and infinities become the strings ``"nan"``, ``"inf"``, ``"-inf"``.
  Other objects get no entry, so the host falls back to ``text/plain`` (IPython's repr). Matplotlib objects
  (``plt.title(...)``, ``plt.plot(...)``) are flagged so the host can prefer the figure image over their repr.
* a last expression that evaluates to ``None`` (``x`` where ``x = None``) produces an ``execute_result`` carrying
  ``{"value": null}``, which IPython normally suppresses; a call returning None (``print(...)``,
  ``plt.show()``) stays silent, like a cell without a value.

The file runs in the user namespace, so everything lives inside ``_aca_setup`` and is deleted at the end. It does
not chdir: the sandbox (or the no-sandbox launcher) already starts the kernel in the data directory. Matplotlib is
not imported here (it costs ~0.5 s); ipykernel's MPLBACKEND makes pyplot use the inline backend when the user
imports it, which publishes open figures as image/png at the end of each cell.
"""


def _aca_setup() -> None:
    import ast
    import math
    import sys

    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    mime = "application/vnd.aca.value+json"
    ip = get_ipython()
    if ip is None:
        return

    def plain(obj):
        """The JSON-native value of obj, or raise TypeError when it has none."""
        np = sys.modules.get("numpy")
        if np is not None and isinstance(obj, np.generic):
            obj = obj.item()
        if isinstance(obj, bool) or obj is None:
            return obj
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return float(obj) if math.isfinite(obj) else str(float(obj))
        if isinstance(obj, str):
            return str(obj)
        raise TypeError

    def is_matplotlib(obj) -> bool:
        if isinstance(obj, (list, tuple)) and obj:
            return all(is_matplotlib(o) for o in obj)
        return type(obj).__module__.startswith("matplotlib.")

    class ValueFormatter(BaseFormatter):
        format_type = Unicode(mime)
        print_method = ObjectName("_repr_aca_value_")

        def __call__(self, obj):
            try:
                return {"value": plain(obj)}
            except TypeError:
                pass
            except Exception:  # a broken __float__/item() must not break the display of the value
                return None
            if is_matplotlib(obj):
                return {"matplotlib": True}
            return None

    ip.display_formatter.formatters[mime] = ValueFormatter(parent=ip.display_formatter)

    last = {"call": False}

    class LastStatement:
        """AST 'transformer' that only notes whether the cell ends with a call (print(...), plt.show())."""

        def visit(self, node):
            body = getattr(node, "body", None)
            stmt = body[-1] if body else None
            value = stmt.value if isinstance(stmt, ast.Expr) else None
            if isinstance(value, ast.Await):
                value = value.value
            last["call"] = isinstance(value, ast.Call)
            return node

    ip.ast_transformers.append(LastStatement())

    hook = ip.display_trap.hook

    def displayhook(result=None):
        if result is None and not last["call"] and not hook.quiet():
            hook.start_displayhook()
            hook.write_output_prompt()
            hook.write_format_data({"text/plain": "None", mime: {"value": None}}, {})
            hook.finish_displayhook()
            return
        hook(result)

    ip.display_trap.hook = displayhook


_aca_setup()
del _aca_setup
