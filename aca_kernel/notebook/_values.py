"""Values that cross between this kernel and the session: ``%%aca -i VAR`` (in) and ``--out VAR`` (out).

JSON values travel inside the code; anything else is pickled to a file in /mnt/data, moved in chunks through the
files API and deleted there. Pickles are only ever read from the user's own session, at the user's request.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._context import SessionState

__all__ = ["fetch", "is_json_value", "loading_code"]

logger = logging.getLogger("aca_kernel.runner")

_LOAD_PICKLE = (
    "{name} = (lambda os, pickle: (lambda p: (pickle.load(open(p, 'rb')), os.remove(p))[0])("
    "next(os.path.join(d, {remote!r}) for d in ('/mnt/data', os.environ.get('ACA_DATA_DIR') or '', os.getcwd()) "
    "if d and os.path.exists(os.path.join(d, {remote!r})))))(__import__('os'), __import__('pickle'))"
)


def is_json_value(value: Any) -> bool:
    """True when JSON carries ``value`` exactly (a tuple or int-keyed dict would come back changed)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False)) == value
    except (TypeError, ValueError):
        return False


def loading_code(state: SessionState, name: str, value: Any) -> str:
    """Code that defines ``name`` in the session; a non-JSON value is uploaded first (pickled)."""
    if is_json_value(value):
        return f"{name} = __import__('json').loads({json.dumps(value)!r})"
    remote = f".aca-in-{uuid.uuid4().hex[:12]}.pkl"
    fd, path = tempfile.mkstemp(prefix="aca-in-", suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(value, f, protocol=4)
        state.client.upload_file(path, remote)
    finally:
        os.remove(path)
    state.touch()
    return _LOAD_PICKLE.format(name=name, remote=remote)


def fetch(state: SessionState, remote_name: str) -> Any:
    """The value the session pickled to ``remote_name`` (which is then deleted there)."""
    # Through a local temporary file: memory holds the unpickled object once, not the bytes as well.
    fd, path = tempfile.mkstemp(prefix="aca-out-", suffix=".pkl")
    os.close(fd)
    try:
        state.client.download_file(remote_name, path)
        with open(path, "rb") as f:
            return pickle.load(f)  # the user's own session wrote it, at the user's request
    finally:
        os.remove(path)
        try:
            state.client.delete_file(remote_name)
        except Exception as exc:
            logger.info("could not delete %s from the session: %s", remote_name, exc)
