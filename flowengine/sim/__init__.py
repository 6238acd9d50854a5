"""A local RELAY server with scripted callers: the embedded default and the test peer.

::

    from flowengine.sim import Simulator, CallerScript, SimCall

    async with Simulator(port=0, project="sim-project", token="sim-token",
                         time_scale=0.01) as sim:
        call = sim.offer_call(context="office", caller="speak:3")
        ...  # a RELAY client connects to sim.url
        await call.wait_ended()
        sim.summary()

The protocol logic lives in :mod:`flowengine.sim.core` (no I/O), the socket in
:mod:`flowengine.sim.server`; docs/simulator.md is the user's guide.
"""

from flowengine.sim.caller import CallerScript, CallerScriptError
from flowengine.sim.calls import SimCall, SimRecording
from flowengine.sim.core import SimCore
from flowengine.sim.server import Simulator

__all__ = ["CallerScript", "CallerScriptError", "SimCall", "SimCore", "SimRecording",
           "Simulator"]
