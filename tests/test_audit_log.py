"""The audit log of staff changes through the admin: nodes drained, model settings and limits changed,
each with who, what (field: before, after) and when; changes without a staff member are not logged."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apiaccess.models import Account, ApiKey
from inference.models import Model, Node
from portal.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(redis_server, superuser_client) -> Client:
    return superuser_client


def test_draining_a_node_is_logged(staff):
    node = Node.objects.create(url="http://gpu9:11434", name="gpu9")
    response = staff.post("/admin/inference/node/", {"action": "drain", "_selected_action": [node.pk]})
    assert response.status_code == 302
    entry = AuditEntry.objects.get(object_type="inference.node")
    assert (entry.actor_username, entry.action, entry.object_id) == ("boss", "changed", str(node.pk))
    assert entry.changes == {"enabled": [True, False]}


def test_changing_a_model_from_the_list_is_logged(staff):
    model = Model.objects.create(public_id="audit-m", ollama_name="audit-m:latest")
    response = staff.post("/admin/inference/model/", {
        "form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": str(model.pk), "_save": "Save"})
    assert response.status_code == 302
    entry = AuditEntry.objects.get(object_type="inference.model")
    assert entry.changes == {"enabled": [True, False]}
    assert entry.object_repr == str(model)


def test_a_keys_limits_changed_in_the_admin_are_logged(staff):
    owner = get_user_model().objects.create_user("kim")
    key, _ = ApiKey.issue(owner, name="laptop")
    response = staff.post(f"/admin/apiaccess/apikey/{key.pk}/change/", {
        "name": "laptop", "priority": "interactive", "expires_at_0": "", "expires_at_1": "",
        "requests_per_minute": "30", "tokens_per_minute": "", "concurrent_requests": "2", "tokens_per_day": "",
        "tokens_per_month": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    key.refresh_from_db()
    assert key.requests_per_minute == 30
    entry = AuditEntry.objects.get(object_type="apiaccess.apikey")
    assert entry.changes == {"requests_per_minute": [None, 30], "concurrent_requests": [None, 2]}
    assert entry.actor_username == "boss"


def test_changes_without_a_staff_member_are_not_staff_changes():
    owner = get_user_model().objects.create_user("lee")
    Account.objects.create(user=owner, tokens_per_day=5)
    Model.objects.create(public_id="synced", ollama_name="synced:latest")  # as the catalogue sync does
    assert not AuditEntry.objects.exists()


def test_staff_read_the_log_in_the_admin_and_cannot_edit_it(staff):
    node = Node.objects.create(url="http://gpu8:11434")
    staff.post("/admin/inference/node/", {"action": "drain", "_selected_action": [node.pk]})
    page = staff.get("/admin/portal/auditentry/").content.decode()
    assert "boss" in page and "enabled" in page
    entry = AuditEntry.objects.get()
    assert staff.post(f"/admin/portal/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
