"""``GET /api/v1/focus-export/?period=YYYY-MM&file_format=csv|parquet``: allocated costs as a FOCUS file.

(``file_format``, not ``format``: DRF keeps ``format`` for choosing its renderer.)

Scoped like every read: finance and auditors get every team's rows, a member the rows of their
teams (``billing_site.api.scoping.visible_team_ids``). The file is spooled to disk past 8 MiB and
streamed back, so a large period does not sit in memory.
"""

from __future__ import annotations

import tempfile

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.views import APIView

from billing_site.api.scoping import visible_team_ids
from chargeback.focus.export import FORMATS, focus_export_write
from chargeback.periods import MONTH_PATTERN, BillingPeriod, PeriodError


class FocusExportView(APIView):
    """The committed allocation of a month as FOCUS 1.0 (one row per allocated line; team and rule in ``x_`` columns)."""

    @extend_schema(
        parameters=[OpenApiParameter("period", {"type": "string", "pattern": MONTH_PATTERN}, required=True,
                                     description="YYYY-MM"),
                    OpenApiParameter("file_format", OpenApiTypes.STR, required=False, enum=list(FORMATS))],
        responses={(200, "text/csv"): OpenApiTypes.BINARY, (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY},
    )
    def get(self, request):
        for name in ("period", "file_format"):
            if len(request.query_params.getlist(name)) > 1:
                raise ValidationError({name: ["Give this parameter once."]})
        fmt = request.query_params.get("file_format", "csv")  # "?file_format=" is none of the choices: 400
        if fmt not in FORMATS:
            raise ValidationError({"file_format": [f"One of: {', '.join(FORMATS)}."]})
        raw = request.query_params.get("period") or ""
        try:
            period = BillingPeriod.month(raw)
        except PeriodError:
            raise ValidationError({"period": ["A month, YYYY-MM."]}) from None
        spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - closed by FileResponse
        focus_export_write(period=period, out=spool, fmt=fmt, team_ids=visible_team_ids(request))
        spool.seek(0)
        name = f"focus-{period.start:%Y-%m}.{fmt}"
        return FileResponse(spool, as_attachment=True, filename=name, content_type=FORMATS[fmt])
