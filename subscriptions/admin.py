"""Finance admin for plans and subscriptions: lists with filters and search, and actions through the services.

Plans: names, tier, description and trial days are edited here (``plan_update``); the prices of a
plan with subscribers are read-only, and the page says why (``PlanImmutable``: finance makes a new
version, "New version of this plan", and moves the subscriptions to it). "Archive" stops new
subscriptions. Charges and their tiers are shown; new plans with charges come from
``POST /api/v1/admin/billing/plans/`` or a new version.

Subscriptions are written by the services only (the list and pages are read-only): the actions
"Cancel at period end", "Cancel now (prorated credit)", "Change plan…" (a form that previews the
upcoming invoice, proration included, before anything is committed), "Extend trial…", "Apply a
coupon…" and "Remove discount" (``subscriptions.services.discounts``). A subscription's page lists its
discounts and its status history.

Coupons: made here through ``coupon_create`` (percent or amount off, duration); afterwards only the
name changes (the terms are read-only, as Stripe's); "Archive" stops new discounts.
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef
from django.http import HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from billing_site.admin_mixins import (
    BillingAdminMixin,
    ExportAdminMixin,
    LargeTableAdminMixin,
    ReadOnlyAdminMixin,
    json_column,
    money_column,
    money_html,
    number_column,
    period_column,
)
from billing_site.errors import BillingError
from billing_site.formatting import date_display, money_display, period_display
from teams.selectors import user_is_finance

from .discounts import discount_amount
from .models import (
    Coupon,
    Plan,
    PlanCharge,
    Subscription,
    SubscriptionDiscount,
    SubscriptionPeriod,
    SubscriptionProration,
    SubscriptionStatusChange,
)
from .mrr import MRR_STATUSES, monthly_amount
from .resources import PlanResource, SubscriptionResource
from .selectors import charge_price_text, discounts_current
from .services.discounts import (
    COUPON_TERMS,
    coupon_archive,
    coupon_create,
    coupon_update,
    subscription_discount_apply,
    subscription_discount_remove,
)
from .services.lifecycle import subscription_cancel, subscription_change_plan, subscription_trial_extend
from .services.plans import PLAN_PRICE_FIELDS, plan_archive, plan_create, plan_new_version, plan_update
from .upcoming import subscription_upcoming_invoice

# --- plans -------------------------------------------------------------------------------------------


class PlanChargeInline(BillingAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = PlanCharge
    fields = ["meter", "resource_type", "feature_key", "provider", "unit", "included_display", "charge_model",
              "price_text"]
    readonly_fields = fields
    extra = 0
    included_display = number_column("included_units", "Included units")

    @admin.display(description="Price beyond the included units")
    def price_text(self, obj):
        return charge_price_text(obj, obj.plan.currency)


class PlanForm(forms.ModelForm):
    class Meta:
        model = Plan
        fields = ["code", "name", "tier", "description", "currency", "fee", "interval", "interval_count", "trial_days",
                  "minimum_commitment"]


class ServiceRefusalAsMessageMixin:
    """A form saved through the services: a refusal (``BillingError``) comes back as the page's
    message, with nothing written, instead of an error page."""

    def _changeform_view(self, request, object_id, form_url, extra_context):
        try:
            return super()._changeform_view(request, object_id, form_url, extra_context)
        except BillingError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


@admin.register(Plan)
class PlanAdmin(ServiceRefusalAsMessageMixin, BillingAdminMixin, ExportAdminMixin, admin.ModelAdmin):
    resource_classes = [PlanResource]  # Export CSV / XLSX (ExportAdminMixin)
    form = PlanForm
    list_display = ["code", "name", "tier", "fee_display", "period", "trial_days", "status", "version", "subscribers"]
    list_filter = ["tier", "status", "interval", "currency"]
    search_fields = ["code", "name", "tier"]
    inlines = [PlanChargeInline]
    actions = ["archive_action", "new_version_action"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            live=Count("subscriptions", distinct=True),
            used=Exists(Subscription.objects.filter(plan=OuterRef("pk"))),
        )

    fee_display = money_column("fee", "Fee")

    @admin.display(description="Per")
    def period(self, obj):
        return f"{obj.interval_count} {obj.interval}s" if obj.interval_count > 1 else obj.interval

    @admin.display(description="Subscriptions", ordering="live")
    def subscribers(self, obj):
        url = reverse("admin:subscriptions_subscription_changelist") + f"?plan__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.live)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and getattr(obj, "used", False):
            return ["code", *(name for name in PLAN_PRICE_FIELDS if name in PlanForm.Meta.fields)]
        return ["code"] if obj is not None else []

    def has_delete_permission(self, request, obj=None):
        return False  # archive instead: invoices and subscriptions name the plan

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        if obj is not None and getattr(obj, "used", False) and request.method == "GET":
            self.message_user(request, "This plan has subscribers: its prices (fee, currency, interval, minimum "
                                       "commitment, charges) can no longer change. Make a new version of it and move "
                                       "the subscriptions to it.", messages.INFO)
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        # Through the plan services: a new plan, or the changed fields of one (prices only while unused).
        data = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
        if not change:
            created = plan_create(**{name: form.cleaned_data[name] for name in PlanForm.Meta.fields
                                     if form.cleaned_data.get(name) not in (None, "")})
            obj.pk, obj.created_at, obj.updated_at = created.pk, created.created_at, created.updated_at
            return
        if data:
            plan_update(plan=Plan.objects.get(pk=obj.pk), **data)

    @admin.action(description="Archive (no new subscriptions)", permissions=["change"])
    def archive_action(self, request, queryset):
        for plan in queryset.order_by("pk"):
            plan_archive(plan=plan)
        self.message_user(request, f"{queryset.count()} plan(s) archived; their subscriptions keep renewing.",
                          messages.SUCCESS)

    @admin.action(description="New version of this plan (same charges, editable prices)", permissions=["add"])
    def new_version_action(self, request, queryset):
        for plan in queryset.order_by("pk"):
            code = f"{plan.code}-v{plan.version + 1}"
            try:
                new = plan_new_version(plan=plan, code=code)
            except BillingError as exc:
                self.message_user(request, f"{plan.code}: {exc.message}", messages.ERROR)
                continue
            self.message_user(request, format_html(
                'New version <a href="{}">{}</a> of {}: set its prices, then move the subscriptions with "Change plan…".',
                reverse("admin:subscriptions_plan_change", args=[new.pk]), new.code, plan.code), messages.SUCCESS)


# --- subscriptions -------------------------------------------------------------------------------------


class SubscriptionPeriodInline(BillingAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = SubscriptionPeriod
    fields = ["period_display", "plan", "is_trial", "fee_display", "usage_display", "invoice", "usage_invoice"]
    readonly_fields = fields
    extra = 0
    ordering = ["-period_start"]
    period_display = period_column("period_start", "period_end", "Period")
    fee_display = money_column("fee", "Fee")
    usage_display = json_column("usage", "Usage")


class SubscriptionProrationInline(BillingAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = SubscriptionProration
    fields = ["kind", "description", "amount_display", "invoice"]
    readonly_fields = fields
    extra = 0
    amount_display = money_column("amount", "Amount")


class SubscriptionDiscountInline(BillingAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = SubscriptionDiscount
    fields = ["coupon", "start", "end"]
    readonly_fields = fields
    extra = 0
    verbose_name_plural = "Discounts (the fee of each period starting in [start, end))"


class SubscriptionStatusChangeInline(BillingAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = SubscriptionStatusChange
    fields = ["at", "from_status", "to_status"]
    readonly_fields = fields
    extra = 0
    verbose_name_plural = "Status history"


class TrialEndingFilter(admin.SimpleListFilter):
    title = "trial ends"
    parameter_name = "trial_ends"

    def lookups(self, request, model_admin):
        return [("7d", "In the next 7 days")]

    def queryset(self, request, queryset):
        if self.value() == "7d":
            now = timezone.now()
            return queryset.filter(status="trialing", trial_end__gte=now, trial_end__lt=now + dt.timedelta(days=7))
        return queryset


class ChangePlanForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.filter(status=Plan.Status.ACTIVE).order_by("tier", "code"))
    when = forms.ChoiceField(choices=[("", "Default: an upgrade now, a downgrade at the period end"),
                                      ("now", "Now, prorated"), ("period_end", "At the period end")], required=False)
    proration = forms.ChoiceField(choices=[("second", "By the second"), ("day", "By the day")], initial="second")

    def __init__(self, *args, subscription: Subscription, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].queryset = self.fields["plan"].queryset.filter(
            currency=subscription.plan.currency).exclude(pk=subscription.plan_id)


class ApplyCouponForm(forms.Form):
    coupon = forms.ModelChoiceField(queryset=Coupon.objects.filter(status=Coupon.Status.ACTIVE).order_by("code"),
                                    help_text="From now: the discount each subscription had ends now.")


class ExtendTrialForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=365, help_text="Days added to each selected trial.")


@admin.register(Subscription)
class SubscriptionAdmin(BillingAdminMixin, ExportAdminMixin, LargeTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    resource_classes = [SubscriptionResource]  # Export CSV / XLSX (ExportAdminMixin)
    list_display = ["id", "subscriber", "plan", "tier", "status", "mrr_display", "current_period_display",
                    "cancel_at_period_end", "trial_end_display"]
    list_filter = ["status", "plan__tier", "plan", "cancel_at_period_end", TrialEndingFilter, "plan__currency"]
    search_fields = ["team__name", "team__slug", "user__username", "plan__code"]
    list_select_related = ["team", "user", "plan"]
    autocomplete_fields = ["team", "user"]
    date_hierarchy = "started_at"
    inlines = [SubscriptionPeriodInline, SubscriptionProrationInline, SubscriptionDiscountInline,
               SubscriptionStatusChangeInline]
    actions = ["cancel_at_period_end_action", "cancel_now_action", "change_plan_action", "extend_trial_action",
               "apply_coupon_action", "remove_discount_action"]
    change_form_template = "admin/subscriptions/subscription/change_form.html"

    @admin.display(description="Subscriber", ordering="team__name")
    def subscriber(self, obj):
        return f"{obj.user} in {obj.team}" if obj.user_id else str(obj.team)

    @admin.display(description="Tier", ordering="plan__tier")
    def tier(self, obj):
        return obj.plan.tier

    def get_queryset(self, request):
        # Whether a subscription ever had a discount: only those read theirs for the MRR column.
        return super().get_queryset(request).annotate(
            discounted=Exists(SubscriptionDiscount.objects.filter(subscription=OuterRef("pk"))))

    @admin.display(description="Trial ends", ordering="trial_end")
    def trial_end_display(self, obj):
        return date_display(obj.trial_end) or "-"

    # MRR is after discounts everywhere (docs/subscriptions.md); the header stays short for the width.
    @admin.display(description="MRR")
    def mrr_display(self, obj):
        plan = obj.plan
        discount = discounts_current([obj]).get(obj.pk) if getattr(obj, "discounted", True) else None
        fee = plan.fee
        if discount is not None:
            c = discount.coupon
            fee -= discount_amount(fee=fee, percent_off=c.percent_off,
                                   amount_off=c.amount_off if c.currency == plan.currency else None)
        amount = monthly_amount(fee=fee, interval=plan.interval, interval_count=plan.interval_count,
                                count=int(obj.status in MRR_STATUSES))
        return money_html(amount, plan.currency)

    @admin.display(description="Current period", ordering="current_period_end")
    def current_period_display(self, obj):
        return period_display(obj.current_period_start, obj.current_period_end)

    def has_manage_permission(self, request):
        return user_is_finance(request.user) and request.user.has_perm("subscriptions.change_subscription")

    # --- actions ------------------------------------------------------------------------------------
    def _each(self, request, queryset, service, done: str):
        changed = 0
        for sub in queryset.select_related("plan").order_by("pk"):
            try:
                service(sub)
                changed += 1
            except BillingError as exc:
                self.message_user(request, f"Subscription #{sub.pk} ({self.subscriber(sub)}): {exc.message}",
                                  messages.ERROR)
        if changed:
            self.message_user(request, f"{changed} subscription(s) {done}.", messages.SUCCESS)

    @admin.action(description="Cancel at period end", permissions=["manage"])
    def cancel_at_period_end_action(self, request, queryset):
        self._each(request, queryset, lambda sub: subscription_cancel(subscription=sub, at_period_end=True),
                   "will cancel at the end of their period")

    @admin.action(description="Cancel now (prorated credit for the unused time)", permissions=["manage"])
    def cancel_now_action(self, request, queryset):
        self._each(request, queryset, lambda sub: subscription_cancel(subscription=sub, at_period_end=False),
                   "canceled now, the unused time credited")

    @admin.action(description="Change plan… (with a proration preview)", permissions=["manage"])
    def change_plan_action(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Change the plan of one subscription at a time.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:subscriptions_subscription_change_plan",
                                            args=[queryset.get().pk]))

    @admin.action(description="Extend trial…", permissions=["manage"])
    def extend_trial_action(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.order_by("pk").values_list("pk", flat=True))
        return HttpResponseRedirect(reverse("admin:subscriptions_subscription_extend_trial") + f"?ids={ids}")

    @admin.action(description="Apply a coupon…", permissions=["manage"])
    def apply_coupon_action(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.order_by("pk").values_list("pk", flat=True))
        return HttpResponseRedirect(reverse("admin:subscriptions_subscription_apply_coupon") + f"?ids={ids}")

    @admin.action(description="Remove discount (full fee from the next period)", permissions=["manage"])
    def remove_discount_action(self, request, queryset):
        self._each(request, queryset, lambda sub: subscription_discount_remove(subscription=sub),
                   "pay the full fee from their next period")

    # --- the intermediate forms ----------------------------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("apply-coupon/", view(self.apply_coupon_view), name="subscriptions_subscription_apply_coupon"),
            path("<int:pk>/change-plan/", view(self.change_plan_view), name="subscriptions_subscription_change_plan"),
            path("extend-trial/", view(self.extend_trial_view), name="subscriptions_subscription_extend_trial"),
        ] + super().get_urls()

    def _context(self, request, title: str, **extra) -> dict:
        return {**self.admin_site.each_context(request), "title": title, "opts": self.model._meta, **extra}

    def change_plan_view(self, request, pk: int):
        """Step 1: choose a plan → the upcoming invoice with its proration (nothing written). Step 2:
        "Change plan" commits through ``subscription_change_plan``."""
        if not self.has_manage_permission(request):
            raise PermissionDenied
        sub = self.get_queryset(request).select_related("plan", "team", "user").filter(pk=pk).first()
        if sub is None:
            return HttpResponseRedirect(reverse("admin:subscriptions_subscription_changelist"))
        data = request.POST if request.method == "POST" else (request.GET if "plan" in request.GET else None)
        form = ChangePlanForm(data, subscription=sub)
        context = self._context(request, f"Change the plan of {self.subscriber(sub)}", form=form, subscription=sub,
                                current=money_display(sub.plan.fee, sub.plan.currency))
        if data is not None and form.is_valid():
            choice = form.cleaned_data
            if request.method == "POST" and request.POST.get("step") == "commit":
                try:
                    changed = subscription_change_plan(subscription=sub, plan=choice["plan"], when=choice["when"] or None,
                                                       proration=choice["proration"])
                except BillingError as exc:
                    form.add_error("plan" if exc.param == "plan" else None, exc.message)
                else:
                    pending = f" from {changed.current_period_end:%Y-%m-%d}" if changed.pending_plan_id else " now"
                    self.message_user(request, f"Subscription #{sub.pk} moves to {choice['plan'].code}{pending}.",
                                      messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:subscriptions_subscription_change", args=[sub.pk]))
            if form.is_valid():
                try:
                    context["preview"] = subscription_upcoming_invoice(
                        subscription=sub, plan=choice["plan"], when=choice["when"] or None,
                        proration=choice["proration"])
                except BillingError as exc:
                    form.add_error("plan" if exc.param == "plan" else None, exc.message)
        return TemplateResponse(request, "admin/subscriptions/subscription/change_plan.html", context)

    def _selected(self, request) -> list[Subscription] | None:
        """The subscriptions an action chose (``?ids=1,2,3``, or the form's ``ids``) that this user
        may see, in pk order; ``None`` when ``ids`` is not a list of numbers."""
        source = request.POST if request.method == "POST" else request.GET
        try:
            ids = [int(part) for part in source.get("ids", "").split(",") if part]
        except ValueError:
            return None
        return list(self.get_queryset(request).select_related("plan", "team", "user").filter(pk__in=ids).order_by("pk"))

    def extend_trial_view(self, request):
        if not self.has_manage_permission(request):
            raise PermissionDenied
        subs = self._selected(request)
        if subs is None:
            return HttpResponseBadRequest("ids must be subscription numbers separated by commas")
        form = ExtendTrialForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            days = dt.timedelta(days=form.cleaned_data["days"])
            done = 0
            for sub in subs:
                try:
                    subscription_trial_extend(subscription=sub, trial_end=(sub.trial_end or sub.current_period_end) + days)
                    done += 1
                except BillingError as exc:
                    self.message_user(request, f"Subscription #{sub.pk} ({self.subscriber(sub)}): {exc.message}",
                                      messages.ERROR)
            if done:
                self.message_user(request, f"{done} trial(s) extended by {days.days} day(s).", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:subscriptions_subscription_changelist"))
        context = self._context(request, f"Extend the trial of {len(subs)} subscription(s)", form=form,
                                subscriptions=subs, ids=",".join(str(s.pk) for s in subs))
        return TemplateResponse(request, "admin/subscriptions/subscription/extend_trial.html", context)

    def apply_coupon_view(self, request):
        """Choose a coupon for the selected subscriptions; each is applied through ``subscription_discount_apply``."""
        if not self.has_manage_permission(request):
            raise PermissionDenied
        subs = self._selected(request)
        if subs is None:
            return HttpResponseBadRequest("ids must be subscription numbers separated by commas")
        form = ApplyCouponForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            coupon = form.cleaned_data["coupon"]
            self._each(request, Subscription.objects.filter(pk__in=[s.pk for s in subs]),
                       lambda sub: subscription_discount_apply(subscription=sub, coupon=coupon),
                       f"discounted by {coupon.code} from now")
            return HttpResponseRedirect(reverse("admin:subscriptions_subscription_changelist"))
        context = self._context(request, f"Apply a coupon to {len(subs)} subscription(s)", form=form,
                                subscriptions=subs, ids=",".join(str(s.pk) for s in subs))
        return TemplateResponse(request, "admin/subscriptions/subscription/apply_coupon.html", context)


# --- coupons -------------------------------------------------------------------------------------------


class CouponForm(forms.ModelForm):
    class Meta:
        model = Coupon
        fields = ["code", "name", "percent_off", "amount_off", "currency", "duration", "duration_in_months"]


@admin.register(Coupon)
class CouponAdmin(ServiceRefusalAsMessageMixin, BillingAdminMixin, admin.ModelAdmin):
    form = CouponForm
    list_display = ["code", "name", "off", "duration_display", "status", "discounts_count"]
    list_filter = ["status", "duration", "currency"]
    search_fields = ["code", "name"]
    actions = ["archive_action"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(used=Count("discounts"))

    @admin.display(description="Off")
    def off(self, obj):
        if obj.percent_off is not None:
            return f"{obj.percent_off.normalize():f} %"
        return money_html(obj.amount_off, obj.currency)

    @admin.display(description="Duration", ordering="duration")
    def duration_display(self, obj):
        if obj.duration == Coupon.Duration.REPEATING:
            return f"{obj.duration_in_months} month(s)"
        return obj.get_duration_display()

    @admin.display(description="Discounts", ordering="used")
    def discounts_count(self, obj):
        return obj.used

    def get_readonly_fields(self, request, obj=None):
        # A coupon's terms never change once made (Stripe's rule): archive it and make another.
        return list(COUPON_TERMS) + ["code", "status"] if obj is not None else []

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if not change:
            data = {name: form.cleaned_data.get(name) for name in CouponForm.Meta.fields}
            data = {k: v for k, v in data.items() if v not in (None, "")}
            created = coupon_create(**data)
            obj.pk, obj.created_at, obj.updated_at = created.pk, created.created_at, created.updated_at
            return
        if "name" in form.changed_data:
            coupon_update(coupon=Coupon.objects.get(pk=obj.pk), name=form.cleaned_data["name"])

    @admin.action(description="Archive (applied to nobody new)", permissions=["change"])
    def archive_action(self, request, queryset):
        for coupon in queryset.order_by("pk"):
            coupon_archive(coupon=coupon)
        self.message_user(request, f"{queryset.count()} coupon(s) archived; their discounts keep running.",
                          messages.SUCCESS)
