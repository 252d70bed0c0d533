"""``scripts/system-deps.sh`` waits for another apt-get holding the dpkg lock instead of failing at once.

The script runs against stand-ins put first on ``PATH`` (``id`` says root, ``dpkg-query`` finds
nothing installed, ``apt-get`` answers "Could not get lock" twice, ``sleep`` returns at once), so the
test installs nothing and takes no ten-second naps.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from django.conf import settings

SCRIPT = Path(settings.BASE_DIR) / "scripts" / "system-deps.sh"


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(0o755)


def test_system_deps_waits_for_the_apt_lock_then_installs(tmp_path):
    # given another apt-get that holds the lock for the first two tries
    log = tmp_path / "apt.log"
    _stub(tmp_path, "id", 'echo 0')
    _stub(tmp_path, "dpkg-query", 'exit 1')
    _stub(tmp_path, "sleep", 'echo "sleep $*" >> ' + str(log))
    _stub(tmp_path, "apt-get", f"""
echo "apt-get $*" >> {log}
if [ "$1" = update ]; then
  n=$(grep -c '^apt-get update' {log})
  if [ "$n" -le 2 ]; then echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 42 (apt-get)" >&2; exit 100; fi
fi
exit 0""")
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    # when the script runs
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    # then it waited twice, updated, and installed with a timeout on the dpkg lock
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Waiting for another apt-get") == 2
    calls = log.read_text().splitlines()
    assert calls.count("sleep 10") == 2
    install = next(line for line in calls if " install " in line)
    assert "DPkg::Lock::Timeout=600" in install and "chromium" in install
