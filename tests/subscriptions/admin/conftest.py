"""The finance admin tests' fixtures (finance and auditor users of the real groups, logged in)."""

from tests.admin.conftest import auditor, auditor_user, finance, finance_user, groups  # noqa: F401 - shared fixtures
