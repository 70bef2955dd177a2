"""An Observer that observes nothing, for plugins and tests that need no packet capture."""

from pathspider.constants import SHUTDOWN_SENTINEL


class Observer:
    """Emits no flows: every result is merged with ``NO_FLOW``.

    ``run_flow_enqueuer`` blocks until shutdown is requested, then ends the flow stream.
    """

    #: Tells the engine not to wait for flows that will never come.
    emits_flows = False

    def run_flow_enqueuer(self, flowqueue, irqueue=None):
        if irqueue is not None:
            irqueue.get()
        flowqueue.put(SHUTDOWN_SENTINEL)

    def stats(self):
        return {"packets": 0, "flows": 0}
