"""The team portal's routes, under ``/portal/`` (``billing_site/urls.py``)."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from . import views

app_name = "portal"

_auth = [
    path("login/", auth_views.LoginView.as_view(template_name="portal/auth/login.html",
                                               redirect_authenticated_user=True,
                                               next_page=reverse_lazy("portal:home")), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page=reverse_lazy("portal:login")), name="logout"),
    path("password-reset/", auth_views.PasswordResetView.as_view(
        template_name="portal/auth/password_reset.html",
        email_template_name="portal/auth/password_reset_email.txt",
        subject_template_name="portal/auth/password_reset_subject.txt",
        success_url=reverse_lazy("portal:password_reset_done")), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(
        template_name="portal/auth/password_reset_done.html"), name="password_reset_done"),
    path("password-reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(
        template_name="portal/auth/password_reset_confirm.html",
        success_url=reverse_lazy("portal:password_reset_complete")), name="password_reset_confirm"),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(
        template_name="portal/auth/password_reset_complete.html"), name="password_reset_complete"),
]

urlpatterns = [
    *_auth,
    path("", views.home, name="home"),
    path("teams/<int:team_id>/", views.overview, name="overview"),
    path("teams/<int:team_id>/usage/", views.usage, name="usage"),
    path("teams/<int:team_id>/usage/rows/", views.usage_rows, name="usage_rows"),
    path("teams/<int:team_id>/usage/export.csv", views.usage_export, {"fmt": "csv"}, name="usage_csv"),
    path("teams/<int:team_id>/usage/export.xlsx", views.usage_export, {"fmt": "xlsx"}, name="usage_xlsx"),
    path("teams/<int:team_id>/wallet/", views.wallet, name="wallet"),
    path("teams/<int:team_id>/invoices/", views.invoices, name="invoices"),
    path("teams/<int:team_id>/invoices/<int:invoice_id>/", views.invoice_detail, name="invoice"),
    path("teams/<int:team_id>/invoices/<int:invoice_id>/pdf/", views.invoice_pdf, name="invoice_pdf"),
    path("teams/<int:team_id>/credit-notes/<int:credit_note_id>/pdf/", views.credit_note_pdf, name="credit_note_pdf"),
    path("teams/<int:team_id>/allocations/", views.allocations, name="allocations"),
    path("teams/<int:team_id>/budget/", views.budget, name="budget"),
    path("teams/<int:team_id>/api-keys/", views.api_keys, name="api_keys"),
    path("teams/<int:team_id>/api-keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="api_key_revoke"),
]
