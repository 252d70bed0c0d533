"""Benchmark: a FOCUS file of 1,000,000 rows uploaded through the admin, previewed and imported by
background jobs: time to done, and the web worker's memory during the upload (flat).

Run on PostgreSQL only::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_upload .venv/bin/python bench/jobs_focus_upload.py [--rows N]

The script (re)creates the database ``bench_upload``, generates two FOCUS files of ``N`` rows
(default 1,000,000; different seeds, so neither import finds the other's rows), then:

* **reference**: imports the first directly in this process (``focus_import``);
* **through the admin**: serves the app with gunicorn (one web worker, sync) beside one
  Procrastinate worker, logs in as finance, uploads the second file as a browser does (a
  multipart POST streamed from disk), follows the preview job, posts "Import" and follows the
  import job to its end. The web worker's resident memory is sampled every 50 ms during the upload.

It prints the upload time, the time to done (upload + preview + import), the ratio to the
reference, and the web worker's memory before and at its peak during the upload.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import ROOT, bench_database, machine_facts  # noqa: E402

BENCH_DB = "bench_upload"
PORT = 8765


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Client:
    """A browser's part: cookies by hand (the session and CSRF cookies), forms posted to loopback."""

    def __init__(self, port: int):
        self.port, self.cookies = port, {}

    def request(self, method: str, path: str, body=None, headers=None, *, length: int | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if length is not None:
            headers["Content-Length"] = str(length)
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";", 1)[0]
        data = response.read()
        conn.close()
        return response.status, response.getheader("Location", ""), data.decode(errors="replace")

    def form(self, path: str, fields: dict) -> tuple[int, str, str]:
        from urllib.parse import urlencode

        body = urlencode({**fields, "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")}).encode()
        return self.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded",
                                                 "Referer": f"http://127.0.0.1:{self.port}{path}"})

    def upload(self, path: str, fields: dict, file: Path) -> tuple[int, str, str]:
        """A multipart POST whose file part is streamed from disk, as a browser sends it."""
        boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in {**fields, "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")}.items()
        ) + (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file.name}"\r\n'
             f"Content-Type: text/csv\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = len(head) + file.stat().st_size + len(tail)

        def body():
            yield head
            with file.open("rb") as stream:
                while block := stream.read(1024 * 1024):
                    yield block
            yield tail

        return self.request("POST", path, body(), {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                                   "Referer": f"http://127.0.0.1:{self.port}{path}"}, length=size)


def _follow(job_pk: int, timeout: float = 3600) -> dict:
    from jobs.models import JobProgress

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = JobProgress.objects.select_related("job").get(pk=job_pk)
        if record.job.status in {"succeeded", "failed"}:
            if record.job.status == "failed" or (record.result or {}).get("refused"):
                sys.exit(f"job {record.title} ended badly: {record.error or record.result}")
            return record.result or {}
        time.sleep(0.2)
    sys.exit("timed out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per file (default 1,000,000)")
    args = parser.parse_args()
    media = tempfile.TemporaryDirectory(prefix="bench-upload-media-")
    os.environ["MEDIA_ROOT"] = media.name
    url = bench_database(BENCH_DB)
    print(machine_facts())

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from chargeback.focus.generator import write_focus_file
    from chargeback.services.focus_import import focus_import

    files = tempfile.TemporaryDirectory(prefix="bench-upload-files-")
    started = time.perf_counter()
    reference_file = write_focus_file(Path(files.name) / "reference.csv", rows=args.rows, period="2026-09", seed=1)
    upload_file = write_focus_file(Path(files.name) / "october.csv", rows=args.rows, period="2026-10", seed=2)
    size = upload_file.path.stat().st_size
    print(f"two files of {args.rows:,} rows ({size / 2**20:.0f} MiB each) generated in "
          f"{time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    result = focus_import(path=reference_file.path, create_teams=True)
    reference = time.perf_counter() - started
    print(f"reference, focus_import in this process: {reference:6.1f} s ({result.rows_imported / reference:,.0f} rows/s); "
          f"load {os.getloadavg()[0]:.2f}")

    user = get_user_model().objects.create_user("bench-finance", password="bench-password", is_staff=True)
    user.groups.add(Group.objects.get(name="finance"))
    env = {**os.environ, "DATABASE_URL": url, "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false",
           "ALLOWED_HOSTS": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "billing_site.wsgi", "--workers", "1", "--bind",
                            f"127.0.0.1:{PORT}", "--timeout", "600"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([sys.executable, "manage.py", "procrastinate", "worker", "--queues=imports"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = Client(PORT)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.request("GET", "/admin/login/")
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("gunicorn did not start")
                time.sleep(0.3)
        status, _, _ = client.form("/admin/login/", {"username": user.username, "password": "bench-password",
                                                     "next": "/admin/"})
        assert status == 302, f"login failed: {status}"
        page = "/admin/chargeback/usagerecord/import-focus/"
        client.request("GET", page)
        web_pid = int(subprocess.check_output(["pgrep", "-P", str(web.pid)]).split()[0])
        before = _rss_kib(web_pid)
        peak = [before]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], _rss_kib(web_pid))
                stop.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        status, location, text = client.upload(page, {"step": "upload", "team_tag": "business_unit",
                                                      "skip_bad_rows": "on"}, upload_file.path)
        uploaded = time.perf_counter() - started
        stop.set()
        sampler.join()
        assert status == 302, f"upload refused: {status} {text[:500]}"
        preview_pk = int(re.search(r"/jobprogress/(\d+)/", location).group(1))
        preview = _follow(preview_pk)
        previewed = time.perf_counter() - started
        upload = preview["upload"]
        status, location, _ = client.form(page, {"step": "import", "token": upload["token"],
                                                 "file_name": upload["file_name"], "team_tag": "business_unit",
                                                 "subaccount_fallback": "False", "skip_bad_rows": "True",
                                                 "total_rows": str(preview["preview"]["total"])})
        assert status == 302, f"import refused: {status}"
        done = _follow(int(re.search(r"/jobprogress/(\d+)/", location).group(1)))
        total = time.perf_counter() - started
        assert done["rows_imported"] == args.rows, done
    finally:
        for process in (web, worker):
            process.terminate()
        for process in (web, worker):
            process.wait()
    print(f"upload of {size / 2**20:.0f} MiB through the admin: {uploaded:6.1f} s ({size / 2**20 / uploaded:.0f} MiB/s); "
          f"web worker RSS {before / 1024:.0f} MiB before, peak {peak[0] / 1024:.0f} MiB during the upload "
          f"({(peak[0] - before) / 1024:+.0f} MiB)")
    print(f"preview job done at {previewed:6.1f} s; import job done at {total:6.1f} s "
          f"({args.rows / (total - previewed):,.0f} rows/s in the job)")
    print(f"time to done through the admin {total:6.1f} s vs reference {reference:6.1f} s: ratio {total / reference:.2f}; "
          f"load {os.getloadavg()[0]:.2f}")
    media.cleanup()
    files.cleanup()


if __name__ == "__main__":
    main()
