from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Progress and outcome of background jobs, beside Procrastinate's own tables."""

    name = "jobs"
    verbose_name = "Jobs"
