"""FOCUS files uploaded through the admin: streamed straight to storage with a size limit, then
previewed and imported by background jobs (``chargeback.tasks``), removed when done or abandoned.

An upload waits in ``MEDIA_ROOT/focus_uploads/<token>.csv`` (never served; plain or gzip, the
reader tells by its magic bytes). :class:`FocusUploadHandler` writes the request's file part there
chunk by chunk as it arrives (64 KiB at a time: the web worker's memory stays flat whatever the
size) and stops reading once ``FOCUS_UPLOAD_MAX_BYTES`` is passed.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.utils import timezone

#: Where uploaded FOCUS files wait between upload, preview and import (below MEDIA_ROOT, never served).
FOCUS_UPLOAD_DIR = "focus_uploads"
_UPLOAD_TOKEN = re.compile(r"^[0-9a-f]{32}$")


class UploadTokenError(ValueError):
    """Not the token of an upload (32 hex digits)."""


def focus_upload_path(token: str) -> Path:
    """The file of upload ``token``; ``UploadTokenError`` for anything but 32 hex digits."""
    if not _UPLOAD_TOKEN.match(token or ""):
        raise UploadTokenError("bad upload token")
    return Path(settings.MEDIA_ROOT) / FOCUS_UPLOAD_DIR / f"{token}.csv"


class StoredUpload(UploadedFile):
    """The uploaded file as stored: ``token`` names it (``focus_upload_path``)."""

    def __init__(self, *, token: str, name: str, size: int, content_type: str | None):
        self.token = token
        super().__init__(file=None, name=name, content_type=content_type, size=size)

    def chunks(self, chunk_size=None):
        with focus_upload_path(self.token).open("rb") as stored:
            while block := stored.read(chunk_size or self.DEFAULT_CHUNK_SIZE):
                yield block


class FocusUploadHandler(FileUploadHandler):
    """Write the request's file straight to the upload folder; refuse past ``max_bytes``.

    Past the limit the upload stops (the rest of the body is read and dropped, never kept), the
    partial file is deleted and ``request.focus_upload_too_large`` is set, for the form to say so.
    """

    chunk_size = 64 * 1024

    def __init__(self, request=None, *, max_bytes: int | None = None):
        super().__init__(request)
        self.max_bytes = settings.FOCUS_UPLOAD_MAX_BYTES if max_bytes is None else max_bytes
        self.token = ""
        self.out = None
        self.size = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if self.request is not None:
            self.request.focus_upload_too_large = False

    def new_file(self, field_name, file_name, content_type, content_length, charset=None, content_type_extra=None):
        super().new_file(field_name, file_name, content_type, content_length, charset, content_type_extra)
        self.token = uuid.uuid4().hex
        target = focus_upload_path(self.token)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.out = target.open("wb")
        self.size = 0

    def receive_data_chunk(self, raw_data, start):
        self.size += len(raw_data)
        if self.size > self.max_bytes:
            self.out.close()
            focus_upload_path(self.token).unlink(missing_ok=True)
            if self.request is not None:
                self.request.focus_upload_too_large = True
            raise StopUpload(connection_reset=False)
        self.out.write(raw_data)
        return None

    def file_complete(self, file_size):
        self.out.close()
        return StoredUpload(token=self.token, name=self.file_name, size=file_size, content_type=self.content_type)

    def upload_interrupted(self):
        if self.out is not None and not self.out.closed:
            self.out.close()
            focus_upload_path(self.token).unlink(missing_ok=True)


def focus_uploads_remove_abandoned(*, older_than: dt.timedelta | None = None, now: dt.datetime | None = None) -> list[str]:
    """Delete uploads last written more than ``older_than`` ago (default ``FOCUS_UPLOAD_ABANDONED_HOURS``):
    files uploaded and never imported. Returns the names removed."""
    older_than = older_than or dt.timedelta(hours=settings.FOCUS_UPLOAD_ABANDONED_HOURS)
    cutoff = (now or timezone.now()).timestamp() - older_than.total_seconds()
    folder = Path(settings.MEDIA_ROOT) / FOCUS_UPLOAD_DIR
    removed = []
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path.name)
        except FileNotFoundError:
            continue  # imported (and removed) meanwhile
    return removed
