"""A session kernel's channels when their connection is gone and nobody said so: the pool must not block.

jupyter_client sends synchronously; a DEALER socket with no connection blocks a send forever, and with it the
pool's event loop (every request, and even SIGTERM). A send now gives up after a moment, on a fresh socket
the request goes out once (it never left the first time, so it cannot run twice).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.emulator_only


@pytest.mark.timeout(120)
async def test_an_execution_on_a_shell_that_lost_its_connection_unnoticed_still_runs_once(make_kernel):
    kernel = await make_kernel()
    assert (await kernel.execute("runs = 0", 60)).status == "succeeded"
    # the connection goes away without a disconnect event (a late or missing report)
    kc = kernel._kc
    kc.shell_channel.socket.disconnect(kc._make_url("shell"))
    outcome = await kernel.execute("runs += 1\nruns", 60)
    assert outcome.status == "succeeded" and outcome.result == 1
    assert (await kernel.execute("runs", 60)).result == 1


@pytest.mark.timeout(120)
async def test_an_interrupt_on_a_dead_control_connection_does_not_block(make_kernel):
    kernel = await make_kernel()
    km = kernel._km
    km._connect_control_socket()
    km._control_socket.disconnect(km._make_url("control"))
    outcome = await kernel.execute("import time\ntime.sleep(3)\n'slept'", 1)
    assert outcome.timed_out  # the interrupt could not be sent: the kernel was restarted instead
    assert (await kernel.execute("1 + 1", 60)).result == 2
