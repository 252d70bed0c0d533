"""Serve the app for the demo: ``manage.py runserver`` and one Procrastinate worker, started together
and stopped together (``make demo``; docs/jobs.md).

Ctrl-C (SIGINT reaches both, being in the same process group) or SIGTERM to this script stops both;
if either ends on its own, the other is stopped too. Usage: ``python scripts/serve.py [HOST:PORT]``.

With ``LOCALSTRIPE_PORT`` set (``make demo STRIPE=local``), a localstripe server (a fake Stripe, in
memory: ``scripts/localstripe_server.py``) starts on that port too and payments are configured
against it with a fake ``sk_test_`` key (docs/payments.md), unless ``STRIPE_SECRET_KEY`` is set.
"""

from __future__ import annotations

import os
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
    env, extra = dict(os.environ), []
    port = env.get("LOCALSTRIPE_PORT", "")
    if port and not env.get("STRIPE_SECRET_KEY"):
        extra.append(subprocess.Popen([sys.executable, str(PROJECT / "scripts" / "localstripe_server.py"), "--port", port,
                                       "--from-scratch"], cwd=PROJECT, stdout=subprocess.DEVNULL))
        env.update(STRIPE_SECRET_KEY="sk_test_" + "demo", STRIPE_API_BASE=f"http://127.0.0.1:{port}")
        print(f"Payments against localstripe on port {port} (a fake Stripe, in memory).", flush=True)
    worker = subprocess.Popen([*manage, "procrastinate", "worker"], cwd=PROJECT, env=env)
    web = subprocess.Popen([*manage, "runserver", host], cwd=PROJECT, env=env)
    print(f"Serving http://{host}/admin/ with a background worker (pid {worker.pid}); Ctrl-C stops both.",
          flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while web.poll() is None and worker.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in (web, worker, *extra):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (web, worker, *extra):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
