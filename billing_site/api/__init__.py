"""The REST API's shared machinery under ``/api/v1/`` (docs/api.md), one module per job.

* ``auth``: who is calling (a person by token or session, a service by team API key);
* ``scoping``: which teams' money the caller may read and write (``teams.selectors`` underneath);
* ``permissions``: who may call what, before any object is looked up;
* ``errors``: the one error shape ``{"error": {"type", "code", "message", "param"}}``;
* ``parsers``, ``pagination``, ``throttling``, ``idempotency``, ``fields``: request and serializer pieces;
* ``router``: the URL patterns of ``/api/v1/``, the only module that imports the apps' views.

The apps' API modules import the pieces; none imports ``router``.
"""
