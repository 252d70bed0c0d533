"""The finance admin tests' fixtures (finance and auditor users of the real groups, logged in; the
headless Chromium of the browser tests and their artifacts folder)."""

from tests.admin.conftest import (  # noqa: F401 - shared fixtures
    artifacts,
    auditor,
    auditor_user,
    browser_type_launch_args,
    finance,
    finance_user,
    groups,
)
