"""ipywidgets for an ACA session's files in /mnt/data.

```python
from aca_kernel import SessionsClient
from aca_kernel.widgets import FileBrowser

browser = FileBrowser(client=SessionsClient(endpoint, credential))
browser          # the last expression of a cell shows it
```

In a notebook, ``%aca_files`` shows the same widget for the current (or a ``--session NAME``) session.
"""

from __future__ import annotations

from .notebook._widgets._browser import FileBrowser

__all__ = ["FileBrowser"]

FileBrowser.__module__ = "aca_kernel.widgets"
