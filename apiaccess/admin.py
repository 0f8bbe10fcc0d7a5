"""Admin for people, API keys and their audit trail. Never shows a secret except once, on the Add page."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count, Q
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from apiaccess import lifecycle
from apiaccess.limits import LIMIT_FIELDS
from apiaccess.models import Account, ApiKey, ExternalIdentity, KeyEvent
from common.http import client_ip
from common.readonly_admin import ReadOnlyModelAdmin

User = get_user_model()


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return ApiKey.Status.choices

    def queryset(self, request, queryset):
        now = timezone.now()
        unexpired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        if self.value() == ApiKey.Status.ACTIVE:
            return queryset.filter(unexpired, revoked_at__isnull=True)
        if self.value() == ApiKey.Status.EXPIRED:
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == ApiKey.Status.REVOKED:
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.action(description="Revoke selected API keys")
def revoke_keys(modeladmin, request, queryset):
    revoked = sum(
        lifecycle.revoke_key(api_key, actor=request.user, via=KeyEvent.Via.ADMIN, source_ip=client_ip(request))
        for api_key in queryset.select_related("user")
    )
    modeladmin.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "masked", "user", "status_label", "created_at", "last_used_at", "expires_at",
                    "model_limits"]
    list_filter = [StatusFilter, "priority", "created_at", "expires_at"]
    search_fields = ["name", "lookup", "user__username", "user__email"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    filter_horizontal = ["allowed_models"]
    actions = [revoke_keys]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(model_count=Count("allowed_models"))

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name", "expires_at", "priority", "allowed_models", *LIMIT_FIELDS]
        return ["user", "name", "masked", "status_label", "created_at", "last_used_at", "expires_at", "revoked_at",
                "priority", "allowed_models", *LIMIT_FIELDS]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # Revoke with the list action, so it is audited; the rest of the key's identity never changes.
        return ["user", "masked", "status_label", "created_at", "last_used_at", "revoked_at"]

    @admin.display(description="Status")
    def status_label(self, obj):
        return obj.status.label

    @admin.display(description="Models", ordering="model_count")
    def model_limits(self, obj):
        return obj.model_count or "all"

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        created, plain = lifecycle.create_key(
            obj.user, actor=request.user, via=KeyEvent.Via.ADMIN, name=obj.name, expires_at=obj.expires_at,
            allowed_models=form.cleaned_data["allowed_models"], source_ip=client_ip(request),
            enforce_limit=False,  # staff may exceed the self-service limit on someone's behalf
            priority=obj.priority,
        )
        ApiKey.objects.filter(pk=created.pk).update(**{name: getattr(obj, name) for name in LIMIT_FIELDS})
        # Let the admin's own bookkeeping (log entry, m2m save, messages) carry on with the created row.
        obj.pk, obj.lookup, obj.digest, obj.created_at = created.pk, created.lookup, created.digest, created.created_at
        obj._state.adding = False
        request._gatehouse_new_key = plain

    def response_add(self, request, obj, post_url_continue=None):
        plain = getattr(request, "_gatehouse_new_key", None)
        if plain is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "key": obj, "plain": plain,
                   "title": "API key created"}
        response = TemplateResponse(request, "admin/apiaccess/apikey/created.html", context)
        add_never_cache_headers(response)  # the only copy of the key: keep it out of every cache
        response["Cache-Control"] += ", no-store"
        return response


@admin.register(KeyEvent)
class KeyEventAdmin(ReadOnlyModelAdmin):
    list_display = ["at", "action", "key_label", "owner_username", "actor_username", "via", "source_ip"]
    list_filter = ["action", "via", "at"]
    search_fields = ["key_label", "owner_username", "actor_username", "detail"]
    date_hierarchy = "at"
    readonly_fields = ["at", "action", "via", "key", "key_label", "owner", "owner_username", "actor",
                       "actor_username", "source_ip", "detail"]


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["name", "masked", "status_label", "created_at", "last_used_at", "expires_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Status")
    def status_label(self, obj):
        return obj.status.label


class AccountInline(admin.StackedInline):
    model = Account
    can_delete = False
    verbose_name_plural = "Gatehouse settings"
    fieldsets = [(None, {"fields": ["priority"]}),
                 ("Limits over all of this person's keys", {"fields": LIMIT_FIELDS})]


class ExternalIdentityInline(admin.TabularInline):
    model = ExternalIdentity
    extra = 0
    readonly_fields = ["issuer", "subject", "created_at", "last_login_at"]
    can_delete = True

    def has_add_permission(self, request, obj=None):
        return False


admin.site.unregister(User)


@admin.register(User)
class GatehouseUserAdmin(UserAdmin):
    list_display = ["username", "email", "is_active", "is_staff", "active_keys", "last_login", "date_joined"]
    list_filter = ["is_active", "is_staff", "is_superuser", "date_joined", "last_login"]
    inlines = [AccountInline, ApiKeyInline, ExternalIdentityInline]

    def get_queryset(self, request):
        now = timezone.now()
        active = Q(api_keys__revoked_at__isnull=True) & (
            Q(api_keys__expires_at__isnull=True) | Q(api_keys__expires_at__gt=now))
        return super().get_queryset(request).annotate(active_key_count=Count("api_keys", filter=active))

    @admin.display(description="Active keys", ordering="active_key_count")
    def active_keys(self, obj):
        return obj.active_key_count
