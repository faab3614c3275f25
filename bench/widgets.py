"""One widget interaction, front end to answer: a slider of ``interact`` moved, until the kernel is idle again.

    python bench/widgets.py [-n 100]

Paths (same machine, same private local pool; rounds interleaved so noise hits both alike):

* ``stock``  jupyter_client -> a stock ipykernel whose ``interact`` runs locally
* ``aca``    jupyter_client -> the ACA Sessions kernel, whose ``interact`` was made in the session: the kernel
  forwards the change in one request, the session runs the function, and its output comes back into the widget
* ``cell``   jupyter_client -> the ACA Sessions kernel running the cell ``1`` (one remote round trip, for scale)

Each interaction waits for what a front end waits for: the function's output and the kernel's idle, which is
when the front end's widget throttle sends the next state.
"""

from __future__ import annotations

import argparse
import os
import sys

from _common import private_environment, summary, timed

INTERACT = "import ipywidgets as w\ndef f(x):\n    print(x * 2)\nui = w.interact(f, x=(0, 1000))"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="interactions per path (default 100)")
    args = parser.parse_args(argv)

    with private_environment():
        from jupyter_client.manager import start_new_kernel

        kernels = {name: start_new_kernel(kernel_name=kspec, env=dict(os.environ))
                   for name, kspec in (("stock", "python3"), ("aca", "aca_sessions"))}
        try:
            sliders = {}
            for name, (_km, kc) in kernels.items():
                msg_id = kc.execute(INTERACT)
                while True:
                    msg = kc.get_iopub_msg(timeout=120)
                    if msg["parent_header"].get("msg_id") != msg_id:
                        continue
                    state = msg["content"].get("data", {}).get("state", {}) if msg["msg_type"] == "comm_open" else {}
                    if state.get("_model_name") == "IntSliderModel":
                        sliders[name] = msg["content"]["comm_id"]
                    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        break

            def move(name: str, value: int) -> None:
                kc = kernels[name][1]
                msg = kc.session.msg("comm_msg", {"comm_id": sliders[name], "data": {
                    "method": "update", "state": {"value": value}, "buffer_paths": []}})
                kc.shell_channel.send(msg)
                printed = False
                while True:
                    got = kc.get_iopub_msg(timeout=120)
                    if got["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                        continue
                    printed = printed or (got["msg_type"] == "stream" and got["content"]["text"] == f"{value * 2}\n")
                    if got["msg_type"] == "status" and got["content"]["execution_state"] == "idle":
                        assert printed, f"{name}: no output for {value}"
                        return

            aca_kc = kernels["aca"][1]
            samples: dict[str, list[float]] = {"stock": [], "aca": [], "cell": []}
            for i in range(3):  # warm-up
                move("stock", i)
                move("aca", i)
            for i in range(args.n):
                value = 10 + i % 900
                samples["stock"].append(timed(lambda v=value: move("stock", v)))
                samples["aca"].append(timed(lambda v=value: move("aca", v)))
                samples["cell"].append(timed(lambda: aca_kc.execute_interactive("1", timeout=120,
                                                                                output_hook=lambda m: None)))
        finally:
            for km, kc in kernels.values():
                kc.stop_channels()
                km.shutdown_kernel(now=True)
    for name, values in samples.items():
        print(f"{name:6s} {summary(values)}")
    import statistics

    print(f"aca / stock (median): {statistics.median(samples['aca']) / statistics.median(samples['stock']):.2f}")
    print(f"aca / cell  (median): {statistics.median(samples['aca']) / statistics.median(samples['cell']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
