"""Serve the app for the demo: ``manage.py runserver`` and one Procrastinate worker, started together
and stopped together (``make demo``; docs/jobs.md).

Ctrl-C (SIGINT reaches both, being in the same process group) or SIGTERM to this script stops both;
if either ends on its own, the other is stopped too. Usage: ``python scripts/serve.py [HOST:PORT]``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(host: str = "127.0.0.1:8000") -> int:
    manage = [sys.executable, str(PROJECT / "manage.py")]
    worker = subprocess.Popen([*manage, "procrastinate", "worker"], cwd=PROJECT)
    web = subprocess.Popen([*manage, "runserver", host], cwd=PROJECT)
    print(f"Serving http://{host}/admin/ with a background worker (pid {worker.pid}); Ctrl-C stops both.",
          flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while web.poll() is None and worker.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in (web, worker):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (web, worker):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
