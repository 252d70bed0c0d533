"""The API's pagination: numbered pages for small lists, a cursor for large tables."""

from __future__ import annotations

import re

from rest_framework import exceptions
from rest_framework.pagination import CursorPagination, PageNumberPagination

MAX_PAGE_SIZE = 1000


_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,9}")


def _page_size(request, default: int) -> int:
    if len(request.query_params.getlist("limit")) > 1:
        raise exceptions.ValidationError({"limit": ["Give this parameter once."]})
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise exceptions.ValidationError({"limit": ["A whole number from 1 to 1000."]})
    size = int(raw)
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise exceptions.ValidationError({"limit": [f"Must be from 1 to {MAX_PAGE_SIZE}, got {size}."]})
    return size


def _documented_bounds(parameters: list[dict]) -> list[dict]:
    """The schema of ``limit`` (1 to 1,000) and ``page`` (from 1) with their bounds, as they are enforced."""
    bounds = {"limit": {"minimum": 1, "maximum": MAX_PAGE_SIZE}, "page": {"minimum": 1}}
    for parameter in parameters:
        parameter["schema"] = {**parameter.get("schema", {}), **bounds.get(parameter["name"], {})}
    return parameters


class PagePagination(PageNumberPagination):
    """``?page=N&limit=M`` (1 ≤ M ≤ 1000, default 100); a bigger ``limit`` is a 400, not clamped."""

    page_size = 100
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        return _page_size(request, self.page_size)

    def paginate_queryset(self, queryset, request, view=None):
        """``?page=`` is a whole number from 1, as the schema says: empty, ``last`` (which DRF would
        read as the last page) or given twice is a 400 naming ``page``; a page past the end is 404."""
        pages = request.query_params.getlist(self.page_query_param)
        if len(pages) > 1:
            raise exceptions.ValidationError({"page": ["Give this parameter once."]})
        if pages and not re.fullmatch(r"[0-9]+", pages[0]):  # a page past the end (any size) is 404
            raise exceptions.ValidationError({"page": ["A whole number from 1."]})
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view):
        return _documented_bounds(super().get_schema_operation_parameters(view))


class NewestFirstCursorPagination(CursorPagination):
    """Cursor pagination over ``-id`` (newest first): O(limit) per page at any depth of a large table.

    ``?limit=M`` (1 ≤ M ≤ 1000, default 100) and the opaque ``cursor`` from ``next``/``previous``.
    """

    page_size = 100
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE
    ordering = "-id"

    def get_page_size(self, request):
        return _page_size(request, self.page_size)

    def get_schema_operation_parameters(self, view):
        return _documented_bounds(super().get_schema_operation_parameters(view))

    def decode_cursor(self, request):
        """The page a ``cursor`` points at. A cursor is opaque (any string the schema allows): one
        that points at no page answers 404 ``not_found`` naming ``cursor``, as a page number past
        the end does, not 400."""
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            missing = exceptions.NotFound("cursor: no page at this cursor; use the next or previous link as given.")
            missing.param = "cursor"
            raise missing from None
