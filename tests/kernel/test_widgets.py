"""Widgets made in the session: the comm traffic of "ACA Sessions" and of a stock ipykernel, via jupyter_client.

Each case runs the same cells in both kernels and, where a front end would, sends them the same comm messages
(a slider moved, a button clicked), the way JupyterLab does. Comm traffic is compared after normalising what
differs between any two kernels: comm and model identifiers (numbered in order of first appearance, in
``IPY_MODEL_`` references and widget views too), the request id an Output widget captures for, and the rate and
times tqdm prints. Consecutive state updates of one widget are compared merged: the session sends them as one
(so a loop that sets a widget cannot fill the output budget). Target names, state, methods, buffers and order
must be equal.

The end covers what has no stock counterpart: a widget whose session lost its state says so when touched, the
forwarding throttle, ``%%aca`` in a stock kernel, and the parts of ``_comms`` that need no kernel.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import wait_until
from jupyter_client.manager import start_new_kernel

from aca_kernel.notebook import _comms

from .conftest import pool_kernelspec

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
_TQDM_RATE = re.compile(r"\d+(\.\d+)?(it/s|s/it)|\d\d:\d\d")
_SERVED = re.compile(r" aca_kernel\.emulator: ([A-Z]+ \S+) -> \d+ ")  # the pool's log line of each request


class Front:
    """One kernel driven as a front end drives it: cells, comm messages, and its comm traffic normalised."""

    def __init__(self, kc: Any) -> None:
        self.kc = kc
        self.labels: dict[str, str] = {}  # comm id -> "c0", "c1", ... in order of first appearance
        self.models: dict[str, str] = {}  # comm id -> _model_name

    def _collect(self, msg_id: str, timeout: float = 120) -> list[dict]:
        msgs = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                if msg["content"]["execution_state"] == "idle":
                    return msgs
                continue
            if msg["msg_type"] == "comm_open":  # a widget by its model, any other comm (nbagg's) by its target
                data = msg["content"]["data"]
                state = data.get("state", {}) if isinstance(data, dict) else {}
                self.models[msg["content"]["comm_id"]] = state.get("_model_name") or msg["content"]["target_name"]
            msgs.append(msg)

    def run(self, code: str) -> tuple[str, list[dict]]:
        msg_id = self.kc.execute(code)
        msgs = self._collect(msg_id)
        while True:
            reply = self.kc.get_shell_msg(timeout=120)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        assert reply["content"]["status"] == "ok", reply["content"]
        return msg_id, msgs

    def send(self, comm_id: str, data: Any, buffers: list[bytes] | None = None,
             msg_type: str = "comm_msg") -> tuple[str, list]:
        """A comm_msg (or comm_close) from the front end; the iopub messages of its request, up to the kernel's idle."""
        msg = self.kc.session.msg(msg_type, {"comm_id": comm_id, "data": data})
        if buffers:
            msg["buffers"] = buffers
        self.kc.shell_channel.send(msg)
        return msg["header"]["msg_id"], self._collect(msg["header"]["msg_id"])

    def comm(self, model_name: str) -> str:
        """The comm id of the latest widget of that model."""
        return [cid for cid, name in self.models.items() if name == model_name][-1]

    def label(self, comm_id: str) -> str:
        return self.labels.setdefault(comm_id, f"c{len(self.labels)}")

    def _norm(self, value: Any, request: str) -> Any:
        if isinstance(value, str):
            if value.startswith("IPY_MODEL_") and _HEX_ID.match(value[10:]):
                return "IPY_MODEL_" + self.label(value[10:])
            return "<request>" if value == request else _TQDM_RATE.sub("<t>", value)
        if isinstance(value, dict):
            return {k: self._norm(v, request) for k, v in value.items()}
        if isinstance(value, list):
            return [self._norm(v, request) for v in value]
        return value

    def normal(self, request: str, msgs: list[dict]) -> list[list[Any]]:
        """What a front end acts on, in order; consecutive stream messages of one name joined."""
        items: list[list[Any]] = []
        for msg in msgs:
            kind, content = msg["msg_type"], msg["content"]
            digests = [hashlib.sha256(bytes(b)).hexdigest()[:16] for b in msg.get("buffers") or ()]
            if kind in ("comm_open", "comm_msg", "comm_close"):
                data = self._norm(content.get("data"), request)
                last = items[-1] if items else None
                if (kind == "comm_msg" and last is not None and last[0] == "comm_msg" and not digests
                        and isinstance(data, dict) and isinstance(last[3], dict)
                        and not last[5] and last[1] == self.label(content["comm_id"])
                        and data.get("method") == "update"
                        and last[3].get("method") == "update" and not data.get("buffer_paths")):
                    last[3]["state"].update(data["state"])
                    continue
                items.append([kind, self.label(content["comm_id"]), content.get("target_name"), data,
                              msg["metadata"], digests])
            elif kind == "stream":
                if items and items[-1][:2] == ["stream", content["name"]]:
                    items[-1][2] += content["text"]
                else:
                    items.append(["stream", content["name"], content["text"]])
            elif kind in ("display_data", "update_display_data", "execute_result"):
                data = content["data"]
                view = data.get(WIDGET_VIEW)
                transient = sorted(k for k, v in (content.get("transient") or {}).items()
                                   if not str(v).startswith("aca-widget-"))  # ours, for the recycled notice
                items.append([kind, sorted(data), data.get("text/plain"),
                              self.label(view["model_id"]) if view else None, transient])
            elif kind == "clear_output":
                items.append(["clear_output", content["wait"]])
            elif kind == "error":
                items.append(["error", content["ename"], content["evalue"]])
        return items


def final_states(front: Front, request: str, msgs: list[dict]) -> dict[str, dict[str, Any]]:
    """Every widget's state after these messages (opens and updates folded), by label."""
    states: dict[str, dict[str, Any]] = {}
    for msg in msgs:
        if msg["msg_type"] not in ("comm_open", "comm_msg"):
            continue
        data = front._norm(msg["content"]["data"], request)
        if msg["msg_type"] == "comm_open" or data.get("method") in ("update", "echo_update"):
            states.setdefault(front.label(msg["content"]["comm_id"]), {}).update(data.get("state") or {})
    return states


class Pair:
    def __init__(self) -> None:
        cwd = tempfile.mkdtemp(prefix="widgets-")
        self.kernels = [start_new_kernel(kernel_name="python3", cwd=cwd), start_new_kernel(kernel_name="aca_test")]
        self.stock, self.aca = (Front(kc) for _km, kc in self.kernels)
        for front in (self.stock, self.aca):
            front.run("1")  # the ACA kernel's first cell notes the local pool on stderr

    def run(self, code: str) -> tuple[list, list, tuple[Any, Any]]:
        """The normalised traffic of one cell in each kernel, and the raw (request, messages) pairs."""
        stock, aca = self.stock.run(code), self.aca.run(code)
        return self.stock.normal(*stock), self.aca.normal(*aca), (stock, aca)

    def send(self, model_name: str, data: Any, buffers: list[bytes] | None = None, msg_type: str = "comm_msg"):
        stock = self.stock.send(self.stock.comm(model_name), data, buffers, msg_type)
        aca = self.aca.send(self.aca.comm(model_name), data, buffers, msg_type)
        return self.stock.normal(*stock), self.aca.normal(*aca), (stock, aca)

    def close(self) -> None:
        for km, kc in self.kernels:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    p = Pair()
    try:
        yield p
    finally:
        p.close()


def test_tqdm_auto_ends_at_100_percent_as_locally(pair):
    code = "from tqdm.auto import tqdm\nimport time\nfor i in tqdm(range(5)):\n    time.sleep(0.01)"
    stock, aca, ((s_req, s_msgs), (a_req, a_msgs)) = pair.run(code)
    # the same widgets opened in the same order, the bar displayed: the text repr is only its fallback
    assert [i for i in aca if i[0] != "comm_msg"] == [i for i in stock if i[0] != "comm_msg"]
    assert any(i[0] == "display_data" and i[3] is not None for i in aca)
    s_final, a_final = final_states(pair.stock, s_req, s_msgs), final_states(pair.aca, a_req, a_msgs)
    assert a_final == s_final
    bar = next(s for s in a_final.values() if s.get("_model_name") == "FloatProgressModel")
    assert bar["value"] == bar["max"] == 5 and bar["bar_style"] == "success"
    texts = [s["value"] for s in a_final.values() if s.get("_model_name") == "HTMLModel"]
    assert "100%" in texts and any(t.startswith("\u20075/5") for t in texts)


def test_a_slider_displayed_then_set_from_a_later_cell(pair):
    stock, aca, _ = pair.run("import ipywidgets as w\ns = w.IntSlider(value=3, description='n')\ndisplay(s)")
    assert aca == stock
    assert [i[0] for i in aca] == ["comm_open", "comm_open", "comm_open", "display_data"]
    stock, aca, _ = pair.run("s.value = 7\ns.max = 50")
    assert aca == stock
    assert [i[3]["state"] for i in aca] == [{"value": 7, "max": 50}]
    # the front end moves it: the session's slider follows, and echoes as ipywidgets does
    stock, aca, _ = pair.send("IntSliderModel", {"method": "update", "state": {"value": 12}, "buffer_paths": []})
    assert aca == stock
    assert aca[0][3] == {"method": "echo_update", "state": {"value": 12}, "buffer_paths": []}
    stock, aca, _ = pair.run("print(s.value)")
    assert aca == stock == [["stream", "stdout", "12\n"]]


def test_a_button_prints_into_an_output_widget_after_a_forwarded_click(pair):
    code = ("import ipywidgets as w\nout = w.Output()\nb = w.Button(description='go')\n"
            "def clicked(_):\n    with out:\n        print('clicked!')\n"
            "b.on_click(clicked)\ndisplay(b, out)\nwith out:\n    print('ready')")
    stock, aca, _ = pair.run(code)
    assert aca == stock
    # `with out:` names the cell's own request, so the front end puts 'ready' into the widget
    capture = [i for i in aca if i[0] == "comm_msg" and "msg_id" in i[3]["state"]]
    assert [i[3]["state"]["msg_id"] for i in capture] == ["<request>", ""]
    stock, aca, (_, (a_req, a_msgs)) = pair.send("ButtonModel", {"method": "custom",
                                                                           "content": {"event": "click"}})
    assert aca == stock
    assert aca == [
        ["comm_msg", aca[0][1], None, {"method": "update", "state": {"msg_id": "<request>"},
                                       "buffer_paths": []}, {}, []],
        ["stream", "stdout", "clicked!\n"],
        ["comm_msg", aca[0][1], None, {"method": "update", "state": {"msg_id": ""}, "buffer_paths": []}, {}, []],
    ]
    assert a_msgs[0]["content"]["data"]["state"]["msg_id"] == a_req  # the click's own id, as locally


def test_interact_reruns_the_remote_function_per_change(pair):
    code = ("import ipywidgets as w\ncalls = []\ndef f(x):\n    calls.append(x)\n    print('f says', x * 11)\n"
            "    return x\nui = w.interact(f, x=(0, 10))")
    stock, aca, _ = pair.run(code)
    assert aca == stock
    assert ["stream", "stdout", "f says 55\n"] in aca
    for value in (7, 2):
        stock, aca, _ = pair.send("IntSliderModel", {"method": "update", "state": {"value": value},
                                                     "buffer_paths": []})
        assert aca == stock
        assert ["stream", "stdout", f"f says {value * 11}\n"] in aca
        assert ["clear_output", True] in aca
    stock, aca, _ = pair.run("calls")
    assert aca == stock and aca[0][2] == "[5, 7, 2]"  # one run per change


def assert_refused(pair: Pair, model_name: str) -> None:
    """A message from the page to that widget is refused as by a stock kernel (each names its own comm id)."""
    stock, aca, _ = pair.send(model_name, {"method": "update", "state": {"value": 5}, "buffer_paths": []})
    stock, aca = (json.loads(json.dumps(items).replace(front.comm(model_name), "<id>"))
                  for items, front in ((stock, pair.stock), (aca, pair.aca)))
    assert aca == stock == [["stream", "stderr", "No such comm: <id>\n"]]


def test_a_widget_closed_in_the_session(pair):
    stock, aca, _ = pair.run("import ipywidgets as w\nclosing = w.IntSlider(value=3)\ndisplay(closing)")
    assert aca == stock
    slider = aca[2][1]
    stock, aca, _ = pair.run("closing.close()\nprint(closing.comm)")
    assert aca == stock == [["comm_close", slider, None, {}, {}, []], ["stream", "stdout", "None\n"]]
    # its twin here is gone too: a late message from the page is refused by this kernel, as by a stock one
    assert_refused(pair, "IntSliderModel")


def test_a_widget_closed_by_the_front_end(pair):
    stock, aca, _ = pair.run("import ipywidgets as w\nheld = w.IntSlider(value=4)\n"
                             "held.comm.on_close(lambda msg: print('closed by the front end', msg['content']['data']))\n"
                             "display(held)")
    assert aca == stock
    # the close reaches the session's comm, whose handler runs there: its output comes back with the close
    stock, aca, _ = pair.send("IntSliderModel", {"why": "page closed"}, msg_type="comm_close")
    assert aca == stock == [["stream", "stdout", "closed by the front end {'why': 'page closed'}\n"]]
    stock, aca, _ = pair.run("print(held.comm._closed, held.comm.comm_id in get_ipython().kernel.comm_manager.comms)")
    assert aca == stock == [["stream", "stdout", "True False\n"]]
    assert_refused(pair, "IntSliderModel")
    # The widget itself was not closed in the session, so it still sends: a stock kernel sends to the comm the
    # page closed (the page drops it, the comm is unknown there); this kernel drops it itself, its twin is gone.
    stock, aca, _ = pair.run("held.value = 9")
    assert [i[0] for i in stock] == ["comm_msg"] and aca == []


def test_a_comm_whose_data_is_not_widget_state(pair):
    """A comm's data is any JSON (nbagg's front end sends strings): it goes both ways as it is."""
    stock, aca, _ = pair.run("from comm import create_comm\nraw = create_comm(target_name='raw', data='hello')\n"
                             "raw.on_msg(lambda msg: print('got', repr(msg['content']['data'])))\n"
                             "raw.send('just text')\nraw.send(['a', 1])\nraw.send(None)\nprint('sent')")
    assert aca == stock
    assert [i[3] for i in aca if i[0] != "stream"] == ["hello", "just text", ["a", 1], {}]
    for data in ("ping", ["x", 2], 5):
        stock, aca, _ = pair.send("raw", data)
        assert aca == stock == [["stream", "stdout", f"got {data!r}\n"]]
    stock, aca, _ = pair.run("raw.close('bye')")
    assert aca == stock and aca[0][0] == "comm_close" and aca[0][3] == "bye"


def test_binary_buffers_both_ways(pair):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    stock, aca, (_, (_, a_msgs)) = pair.run(
        f"import ipywidgets as w\nimg = w.Image(value={png!r}, format='png')\ndisplay(img)\n"
        "img.send({'kind': 'blob'}, buffers=[b'\\x00\\x01\\x02'])")
    assert aca == stock
    opened = next(m for m in a_msgs if m["msg_type"] == "comm_open"
                  and m["content"]["data"]["state"]["_model_name"] == "ImageModel")
    assert [bytes(b) for b in opened["buffers"]] == [png]
    custom = [m for m in a_msgs if m["msg_type"] == "comm_msg"][-1]
    assert custom["content"]["data"]["method"] == "custom" and [bytes(b) for b in custom["buffers"]] == [b"\0\1\2"]
    # the front end sends bytes: they reach the session's widget as bytes
    stock, aca, _ = pair.send("ImageModel", {"method": "update", "state": {}, "buffer_paths": [["value"]]},
                              buffers=[b"new bytes"])
    assert aca == stock
    stock, aca, _ = pair.run("bytes(img.value)")
    assert aca == stock and aca[0][2] == "b'new bytes'"


def test_an_interactive_matplotlib_figure_ipympl(pair):
    """ipympl's figure: custom messages both ways and the picture as a binary buffer (its front-end extension
    must be installed where JupyterLab runs; here it is, in the same environment)."""
    pytest.importorskip("ipympl")
    stock, aca, _ = pair.run("%matplotlib widget\nimport matplotlib.pyplot as plt\n"
                             "fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([1, 3, 2])\nfig.canvas")
    assert aca == stock
    assert any(i[0] == "execute_result" and i[3] is not None for i in aca)
    for content in ({"type": "initialized"}, {"type": "send_image_mode"}, {"type": "refresh"}, {"type": "draw"}):
        stock, aca, _ = pair.send("MPLCanvasModel", {"method": "custom", "content": content})
        assert aca == stock, content
    assert aca[-1][3] == {"method": "custom", "content": {"data": '{"type": "binary"}'}} and len(aca[-1][5]) == 1


def test_an_interactive_matplotlib_figure_nbagg(pair):
    """nbagg's figure (``%matplotlib notebook``): a comm whose messages are JSON strings, the picture as a binary
    PNG; the messages of its front end (matplotlib's mpl.js) when the figure is shown, and their answers."""
    stock, aca, raw = pair.run("%matplotlib notebook\nimport matplotlib.pyplot as plt\nplt.close('all')\n"
                               "fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([1, 3, 2])\nplt.show()")
    figure_ids, scripts = [], []
    for items, (_, msgs) in zip((stock, aca), raw, strict=True):
        opened = next(m for m in msgs if m["msg_type"] == "comm_open")
        assert opened["content"]["target_name"] == "matplotlib"
        figure_ids.append(opened["content"]["data"]["id"])
        html = [m["content"]["data"]["text/html"] for m in msgs if "text/html" in m["content"].get("data", {})]
        assert html == [f"<div id='{figure_ids[-1]}'></div>"]  # where mpl.js draws the figure of that comm
        scripts.append([m["content"]["data"]["application/javascript"] for m in msgs
                        if "application/javascript" in m["content"].get("data", {})])
        next(i for i in items if i[0] == "comm_open")[3] = {"id": "<figure>"}
    assert aca == stock
    assert scripts[1] == scripts[0] and len(scripts[0]) == 1
    figure = next(i[1] for i in aca if i[0] == "comm_open")
    assert ["comm_msg", figure, None, {"data": '{"type": "refresh"}'}, {}, []] in aca
    for content in ({"type": "supports_binary", "value": True}, {"type": "send_image_mode"}, {"type": "refresh"},
                    {"type": "draw"}):
        answers, pngs = [], []
        for front, figure_id in zip((pair.stock, pair.aca), figure_ids, strict=True):
            request, msgs = front.send(front.comm("matplotlib"), json.dumps({**content, "figure_id": figure_id}))
            answers.append(front.normal(request, msgs))
            pngs.append([bytes(b) for m in msgs for b in m.get("buffers") or ()])
        assert answers[1] == answers[0], content
        assert pngs[1] == pngs[0], content
    assert answers[1][-1][3] == {"blob": "image/png"} and len(pngs[1]) == 1
    assert pngs[1][0].startswith(b"\x89PNG\r\n\x1a\n")


def test_a_forwarded_message_answers_before_the_kernel_is_idle(pair):
    """The front end's widget throttle sends the next state only when the kernel is idle for the previous one:
    everything the session produced for a message arrives before that idle, so a drag of many positions
    becomes one request per round trip with the latest position, never a queue."""
    pair.aca.run("import ipywidgets as w\nruns = []\nsl = w.IntSlider()\nsl.observe(lambda c: runs.append(c.new), "
                 "'value')\ndisplay(sl)")
    front = pair.aca
    slider = front.comm("IntSliderModel")
    msg = front.kc.session.msg("comm_msg", {"comm_id": slider, "data": {
        "method": "update", "state": {"value": 1}, "buffer_paths": []}})
    front.kc.shell_channel.send(msg)
    buffered: dict[str, Any] = {}
    for value in range(2, 31):  # the drag goes on while the first message is in flight: the front end buffers
        buffered = {"method": "update", "state": {"value": value}, "buffer_paths": []}
    echoes = [m for m in front._collect(msg["header"]["msg_id"]) if m["msg_type"] == "comm_msg"]
    assert [m["content"]["data"]["state"] for m in echoes] == [{"value": 1}]  # arrived before the idle
    _, msgs = front.send(slider, buffered)  # sent on that idle: the latest position only
    assert [m["content"]["data"]["state"] for m in msgs if m["msg_type"] == "comm_msg"] == [{"value": 30}]
    _, msgs = front.run("runs")
    assert front.normal("", msgs)[0][2] == "[1, 30]"  # two runs in the session for a drag over 30 positions


def test_a_forwarded_message_costs_one_request(kernel, kernelspecs, make_pool):
    """One interaction, one request: counted in the pool's own log of the HTTP requests it served."""
    own = make_pool("--ready", "0")
    pool_kernelspec(kernelspecs, "aca_test_requests", own)
    _km, kc = kernel("aca_test_requests")
    front = Front(kc)
    front.run("import ipywidgets as w\ndef f(x):\n    print('f says', x)\nui = w.interact(f, x=(0, 10))")
    start = len(own.output)
    request, msgs = front.send(front.comm("IntSliderModel"), {"method": "update", "state": {"value": 7},
                                                              "buffer_paths": []})
    assert ["stream", "stdout", "f says 7\n"] in front.normal(request, msgs)  # answered: its requests are done
    # a mark of our own: the pool logs each request as it answers it, so the kernel's are all logged before it
    httpx.get(own.endpoint.rstrip("/") + "/openapi.json").raise_for_status()
    assert wait_until(lambda: any("GET /openapi.json" in line for line in own.output[start:]), timeout=30)
    served = [m.group(1) for line in own.output[start:] if (m := _SERVED.search(line))]
    assert served == ["POST /code/execute", "GET /openapi.json"], served


def test_a_widget_of_a_lost_session_says_so_when_touched(kernel):
    _km, kc = kernel()
    front = Front(kc)
    front.run("import ipywidgets as w\ns = w.IntSlider()\ndisplay(s)")
    shown = next(m for m in front.run("t = w.ToggleButton(description='t')\ndisplay(t)")[1]
                 if m["msg_type"] == "display_data")
    display_id = shown["content"]["transient"]["display_id"]
    assert display_id.startswith("aca-widget-")
    kc.execute("import os\nos._exit(1)")  # the session's Python dies: its widgets are gone
    assert wait_until(lambda: kc.get_shell_msg(timeout=60)["msg_type"] == "execute_reply", timeout=90)
    request, msgs = front.send(front.comm("ToggleButtonModel"), {"method": "update", "state": {"value": True},
                                                                 "buffer_paths": []})
    updates = {m["content"]["transient"]["display_id"]: m["content"]["data"]["text/plain"] for m in msgs
               if m["msg_type"] == "update_display_data"}
    assert display_id in updates and len(updates) == 2  # both displays of that session
    assert "was recycled or its Python process restarted" in updates[display_id]
    assert "Run its cell again" in updates[display_id]
    disabled = [m for m in msgs if m["msg_type"] == "comm_msg"]
    assert disabled and all(m["content"]["data"]["state"] == {"disabled": True} for m in disabled)
    assert all(m["parent_header"]["msg_id"] == request for m in msgs)
    _, msgs = front.run("1 + 1")  # the next cell says the state was lost, as after any restart
    assert "lost its state" in "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
    # touched again after a cell reinstalled the runtime: the same notice, without asking the session
    _, msgs = front.send(front.comm("IntSliderModel"), {"method": "update", "state": {"value": 3},
                                                        "buffer_paths": []})
    assert any("Run its cell again" in m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")


def test_a_comm_the_session_no_longer_has_is_reported(kernel):
    _km, kc = kernel()
    front = Front(kc)
    front.run("import ipywidgets as w\nb = w.Button()\ndisplay(b)")
    front.run("get_ipython().kernel.comm_manager.comms.pop(b.comm.comm_id)")  # gone there, not closed here
    _, msgs = front.send(front.comm("ButtonModel"), {"method": "custom", "content": {"event": "click"}})
    notes = [m["content"]["data"]["text/plain"] for m in msgs if m["msg_type"] == "update_display_data"]
    assert notes and "its objects are gone" in notes[0]


def test_a_replaced_session_s_widget_says_so(kernel):
    _km, kc = kernel()
    front = Front(kc)
    front.run("import ipywidgets as w\nb = w.Button()\ndisplay(b)")
    front.run("%aca_new_session")
    _, msgs = front.send(front.comm("ButtonModel"), {"method": "custom", "content": {"event": "click"}})
    notes = [m["content"]["data"]["text/plain"] for m in msgs if m["msg_type"] == "update_display_data"]
    assert notes and "no longer this notebook's session (%aca_new_session" in notes[0]


def test_a_reloaded_page_gets_the_session_widgets_states(kernel):
    _km, kc = kernel()
    front = Front(kc)
    front.run("%%local\nimport ipywidgets")  # ipywidgets here answers a reloaded page's question
    front.run("import ipywidgets as w\ns = w.IntSlider(value=3)\nimg = w.Image(value=b'abc')\ndisplay(s, img)\n"
              "s.value = 7")
    front.send(front.comm("IntSliderModel"), {"method": "update", "state": {"value": 8}, "buffer_paths": []})
    # the page reloads: JupyterLab's widget manager opens the control comm and asks for every widget's state
    control = uuid.uuid4().hex
    msg = kc.session.msg("comm_open", {"comm_id": control, "target_name": "jupyter.widget.control", "data": {}},
                         metadata={"version": "1.0.0"})
    kc.shell_channel.send(msg)
    front._collect(msg["header"]["msg_id"])
    _, msgs = front.send(control, {"method": "request_states"})
    answer = next(m for m in msgs if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == control)
    data = answer["content"]["data"]
    assert data["method"] == "update_states"
    slider = data["states"][front.comm("IntSliderModel")]
    assert slider["model_name"] == "IntSliderModel" and slider["state"]["value"] == 8
    assert slider["model_module"] == "@jupyter-widgets/controls"
    image = front.comm("ImageModel")
    assert bytes(answer["buffers"][data["buffer_paths"].index([image, "state", "value"])]) == b"abc"
    layout = slider["state"]["layout"]
    assert layout.startswith("IPY_MODEL_") and layout[10:] in data["states"]  # references in local ids


def test_several_sessions_and_local_widgets_never_collide(kernel):
    _km, kc = kernel()
    front = Front(kc)
    # the same model id in two sessions, and a local widget: three widgets, three comms here
    make = "import ipywidgets as w\nv = w.IntText(value={value}, model_id='fixedmodelid0000000000000000000a')\n"
    _, first = front.run("%%aca\n" + make.format(value=1) + "display(v)")
    _, second = front.run("%%aca --session other\n" + make.format(value=2) + "display(v)")
    _, local = front.run("%%local\nimport ipywidgets as w\nv = w.IntText(value=3)\ndisplay(v)")
    views = [next(m["content"]["data"][WIDGET_VIEW]["model_id"] for m in msgs if m["msg_type"] == "display_data")
             for msgs in (first, second, local)]
    assert len(set(views)) == 3
    for model_id, value in zip(views, (10, 20, 30), strict=True):
        front.send(model_id, {"method": "update", "state": {"value": value}, "buffer_paths": []})
    results = [front.run(cell)[1] for cell in ("v.value", "%%aca --session other\nv.value", "%%local\nv.value")]
    assert [front.normal("", r)[0][2] for r in results] == ["10", "20", "30"]


def test_aca_magic_in_a_stock_kernel_mirrors_widgets_too(pool):
    env = {**os.environ, "ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or ""}
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        front = Front(kc)
        front.run("%load_ext aca_sessions")
        request, msgs = front.run("%%aca\nimport ipywidgets as w\ndef f(x):\n    print('remote', x)\n"
                                  "ui = w.interact(f, x=(0, 10))")
        shown = front.normal(request, msgs)
        assert ["stream", "stdout", "remote 5\n"] in shown
        assert any(i[0] == "display_data" and i[3] is not None for i in shown)
        request, msgs = front.send(front.comm("IntSliderModel"), {"method": "update", "state": {"value": 9},
                                                                  "buffer_paths": []})
        shown = front.normal(request, msgs)
        assert ["stream", "stdout", "remote 9\n"] in shown
        assert ["comm_msg", shown[1][1], None, {"method": "update", "state": {"msg_id": "<request>"},
                                                "buffer_paths": []}, {}, []] in shown
        request, msgs = front.run("%%aca\nfrom tqdm.auto import tqdm\nfor i in tqdm(range(5)):\n    pass")
        bar = next(s for s in final_states(front, request, msgs).values()
                   if s.get("_model_name") == "FloatProgressModel")
        assert bar["value"] == 5 and bar["bar_style"] == "success"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# --- the parts of _comms that need no kernel --------------------------------------------------------------------

def test_identifiers_in_widget_state_are_renamed():
    table = {"a" * 32: "b" * 32}
    state = {"children": ["IPY_MODEL_" + "a" * 32, "IPY_MODEL_" + "c" * 32], "layout": "IPY_MODEL_" + "a" * 32,
             "n": 3, "text": "IPY_MODEL_ in prose"}
    assert _comms._map_refs(state, table) == {
        "children": ["IPY_MODEL_" + "b" * 32, "IPY_MODEL_" + "c" * 32], "layout": "IPY_MODEL_" + "b" * 32,
        "n": 3, "text": "IPY_MODEL_ in prose"}


def _update(comm_id: str, **state: Any) -> dict[str, Any]:
    return {"comm_id": comm_id, "kind": "msg", "data": {"method": "update", "state": state, "buffer_paths": []},
            "metadata": {}, "buffers": []}


def test_state_updates_merge_but_clicks_keep_their_order():
    items: list[dict[str, Any]] = []
    for item in (_update("s", value=1), _update("s", value=2, max=9), _update("t", value=5),
                 _update("s", value=3)):
        _comms._merge(items, item)
    # never past another widget's message: t's handlers may read s
    assert [(i["comm_id"], i["data"]["state"]) for i in items] == [("s", {"value": 2, "max": 9}),
                                                                    ("t", {"value": 5}), ("s", {"value": 3})]
    click = {"comm_id": "s", "kind": "msg", "data": {"method": "custom", "content": {"event": "click"}},
             "metadata": {}, "buffers": []}
    _comms._merge(items, click)
    _comms._merge(items, _update("s", value=4))
    assert [i["data"].get("state") for i in items][-2:] == [None, {"value": 4}]


def test_messages_whose_data_is_not_widget_state_are_never_merged():
    items: list[dict[str, Any]] = []
    for event in ('{"type": "refresh"}', '{"type": "draw"}', ["a"], None):  # nbagg's events are JSON strings
        _comms._merge(items, {"comm_id": "f", "kind": "msg", "data": event, "metadata": {}, "buffers": []})
    _comms._merge(items, _update("f", value=1))
    assert [i["data"] for i in items] == ['{"type": "refresh"}', '{"type": "draw"}', ["a"], None,
                                          {"method": "update", "state": {"value": 1}, "buffer_paths": []}]


def test_one_request_in_flight_per_session_and_the_latest_state_wins():
    forwarder = _comms._Forwarder()
    sent: list[list[dict[str, Any]]] = []
    first_in_flight, release = threading.Event(), threading.Event()

    def send(batch: Any) -> None:
        sent.append([dict(i, data=json.loads(json.dumps(i["data"]))) for i in batch.items])
        if len(sent) == 1:
            first_in_flight.set()
            assert release.wait(30)

    def submit(item: dict[str, Any]) -> threading.Thread:
        thread = threading.Thread(target=forwarder.submit, args=(item, {}, None, send))
        thread.start()
        return thread

    threads = [submit(_update("s", value=0))]
    assert first_in_flight.wait(30)
    for value in range(1, 21):  # a burst from other threads while the first request is in flight, in order
        threads.append(submit(_update("s", value=value)))
        assert wait_until(lambda v=value: [i["data"]["state"] for i in forwarder._open.items] == [{"value": v}],
                          timeout=30)
    threads.append(submit({"comm_id": "b", "kind": "msg", "data": {"method": "custom", "content": {}},
                           "metadata": {}, "buffers": []}))
    assert wait_until(lambda: len(forwarder._open.items) == 2, timeout=30)
    assert all(t.is_alive() for t in threads)  # every caller waits until its message was answered
    release.set()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert len(sent) == 2
    assert [(i["comm_id"], i["data"].get("state")) for i in sent[1]] == [("s", {"value": 20}), ("b", None)]
