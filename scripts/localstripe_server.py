"""Run localstripe (the stateful fake Stripe server of the tests, benchmarks and ``make demo``) in memory only.

``localstripe`` keeps its objects in memory and also pickles them, after every write, to the fixed
file ``/tmp/localstripe.pickle`` (and reads it back at start unless ``--from-scratch``): every
server on the machine would share and rewrite that one file, each write costing a dump of the whole
store. This launcher turns both off, so each server is its own, and starts localstripe's own
``server.start`` with the same arguments (``--port N``)::

    python scripts/localstripe_server.py --port 8420
"""

from __future__ import annotations

from localstripe import resources, server


def _in_memory_only() -> None:
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None


if __name__ == "__main__":
    _in_memory_only()
    server.start()
