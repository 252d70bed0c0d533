"""The site the API benchmark serves: the product's URLs plus one minimal endpoint, its reference.

``POST /api/v1/bench/minimal/`` is the least a DRF endpoint can do behind the product's own
machinery: the same middleware, authentication (``Api-Key``), permission and throttle classes,
parser and renderer, and one ``INSERT`` into ``bench_minimal`` (a table ``api_load.py`` creates).
gunicorn serves it with ``DJANGO_SETTINGS_MODULE=bench_site`` and ``--pythonpath bench``; the
product never imports this module.
"""

import functools

from billing_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench_site"


@functools.cache
def _urlpatterns():
    from django.db import connection
    from django.urls import path
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from billing_site.urls import urlpatterns as product

    class MinimalView(APIView):
        key_actions = ("post",)
        money_actions = ("post",)

        def post(self, request):
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO bench_minimal (team_id, note) VALUES (%s, %s) RETURNING id",
                               [request.user.team.pk, str(request.data.get("note", ""))[:100]])
                [pk] = cursor.fetchone()
            return Response({"id": pk}, status=201)

    return [path("api/v1/bench/minimal/", MinimalView.as_view()), *product]


def __getattr__(name):
    # The URLconf is read after settings are loaded: build the patterns then, not at settings import.
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)
