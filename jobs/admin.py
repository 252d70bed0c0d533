"""The admin's "Jobs" page: what is queued, running, done and failed, with progress, result or error.

Each row is a :class:`~jobs.models.JobProgress` joined to its Procrastinate job (status, attempts);
a job's page is its progress page (it refreshes itself until the job ends). Failed jobs can be
retried from the list. Procrastinate's own admin (every job with its events, cancel and abort)
stays registered beside it, under "Procrastinate".
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from procrastinate import utils
from procrastinate.contrib.django import app
from procrastinate.jobs import Status

from billing_site.admin_mixins import BillingAdminMixin

from .models import JobProgress

#: How the page names Procrastinate's statuses.
STATUS_LABELS = {
    "todo": "queued",
    "doing": "running",
    "succeeded": "done",
    "failed": "failed",
    "cancelled": "cancelled",
    "aborted": "aborted",
}


def job_status(record: JobProgress) -> str:
    """``queued``, ``running``, ``done``, ``failed``, ``cancelled`` or ``aborted``; ``gone`` when the
    Procrastinate job was deleted."""
    try:
        return STATUS_LABELS.get(record.job.status, record.job.status)
    except JobProgress.job.RelatedObjectDoesNotExist:
        return "gone"


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(key, label) for key, label in STATUS_LABELS.items()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(job__status=self.value())
        return queryset


@admin.register(JobProgress)
class JobProgressAdmin(BillingAdminMixin, admin.ModelAdmin):
    list_display = ["job_id", "title", "status", "progress_bar", "outcome", "created_by", "started_at", "finished_at"]
    list_display_links = ["job_id", "title"]
    list_filter = [StatusFilter]
    list_select_related = ["job", "created_by"]
    search_fields = ["title"]
    show_full_result_count = False
    actions = ["retry"]
    progress_template = "admin/jobs/jobprogress/progress.html"

    def has_add_permission(self, request, *args):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="status")
    def status(self, record: JobProgress) -> str:
        return job_status(record)

    @admin.display(description="progress")
    def progress_bar(self, record: JobProgress) -> str:
        if job_status(record) != "running" and not record.step:
            return ""
        return format_html(
            '<progress max="100" value="{}" style="width:8em"></progress> {} {}',
            record.percent if record.percent is not None else "", record.step, record.counter,
        )

    @admin.display(description="result or error")
    def outcome(self, record: JobProgress) -> str:
        if record.error:
            return record.error.splitlines()[-1][:200]
        return ((record.result or {}).get("message") or "")[:200]

    @admin.action(description="Retry the selected failed jobs")
    def retry(self, request, queryset):
        retried = 0
        for record in queryset.select_related("job").filter(job__status=Status.FAILED.value):
            job = record.job
            app.job_manager.retry_job_by_id(job.id, utils.utcnow(), job.priority, job.queue_name, job.lock)
            retried += 1
        self.message_user(request, f"{retried} failed job(s) put back in their queue.",
                          messages.SUCCESS if retried else messages.WARNING)

    def get_urls(self):
        return [
            path("<int:pk>/download/", self.admin_site.admin_view(self.download_view), name="jobs_jobprogress_download"),
        ] + super().get_urls()

    def download_view(self, request, pk):
        """The file a job wrote to storage (``result["file"]``: a zip of PDFs), as an attachment."""
        record = self.get_object(request, str(pk))
        if record is None or not self.has_view_permission(request, record):
            raise Http404
        name = (record.result or {}).get("file")
        if not name or not default_storage.exists(name):
            raise Http404("This job has no file (yet), or it was removed.")
        return FileResponse(default_storage.open(name, "rb"), as_attachment=True, filename=name.rsplit("/", 1)[-1])

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The job's progress page: status, step and bar, then the result (message, lines,
        download) or the error. It reloads itself every two seconds until the job ends."""
        record = self.get_object(request, object_id)
        if record is None or not self.has_view_permission(request, record):
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        status = job_status(record)
        children = list(record.children.select_related("job"))
        children_open = [child for child in children if job_status(child) in {"queued", "running"}]
        children_failed = [child for child in children if job_status(child) == "failed"]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": record.title,
            "record": record,
            "status": status,
            "finished": status in {"done", "failed", "cancelled", "aborted", "gone"} and not children_open,
            "children": children,
            "children_open": len(children_open),
            "children_failed": children_failed,
            "download_url": reverse("admin:jobs_jobprogress_download", args=[record.pk])
            if (record.result or {}).get("file") else "",
            "result": record.result or {},
            "may_retry": status == "failed" and self.has_change_permission(request, record),
            "procrastinate_url": reverse("admin:procrastinate_procrastinatejob_change", args=[record.job_id])
            if status != "gone" else "",
        }
        if request.method == "POST" and context["may_retry"]:
            self.retry(request, JobProgress.objects.filter(pk=record.pk))
            return TemplateResponse(request, self.progress_template, {**context, "status": "queued",
                                                                         "finished": False, "may_retry": False})
        return TemplateResponse(request, self.progress_template, context)
