"""The CRM administration over HTTP, on SQLite and PostgreSQL: secrets are write-only (the push
secret shown once), bad settings are clear problems, client contacts per queue, failed pushes
and emails listed and retried, each tenant seeing only its own; the panel's CRM endpoint."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from omnicc.store.repositories import Queues
from omnicc.store.tables import ClientNotification, CrmPush, Customer, Queue
from tests.integration.api.test_admin_api import Center, _ok, _problem, center

pytestmark = pytest.mark.anyio
__all__ = ["center"]

CONNECTOR: dict[str, Any] = {
    "lookup_enabled": True, "lookup_url": "https://crm.example/contacts?phone={phone}",
    "auth_value": "Bearer secret-token", "push_enabled": True,
    "push_url": "https://crm.example/hooks",
    "mapping": {"record": "results[0]", "fields": [{"label": "Company", "path": "company"}],
                "attributes": {"vip": "vip"}},
}


async def test_the_connector_keeps_its_secrets(center: Center) -> None:
    c = center.client
    h = await center.login("admin")
    assert (await _ok(await c.get("/api/admin/crm")))["lookup_enabled"] is False
    saved = await _ok(await c.put("/api/admin/crm", headers=h, json=CONNECTOR))
    assert saved["push_secret"].startswith("whsec_") and saved["has_auth_value"]
    shown = await _ok(await c.get("/api/admin/crm"))
    assert shown["push_secret"] is None and "secret-token" not in str(shown)
    assert shown["mapping"]["attributes"] == {"vip": "vip"}
    again = await _ok(await c.put("/api/admin/crm", headers=h, json={
        **CONNECTOR, "auth_value": None}))
    assert again["push_secret"] is None and again["has_auth_value"] and again["has_push_secret"]

    for wrong in ({"lookup_url": "ftp://crm.example"}, {"timeout_s": 0},
                  {"mapping": {"attributes": {"password": "x"}}}, {"lookup_method": "PATCH"}):
        _problem(await c.put("/api/admin/crm", headers=h, json={**CONNECTOR, **wrong}), 422)
    _problem(await c.put("/api/admin/crm", json=CONNECTOR), 403)  # no CSRF token

    await center.login("agent")
    _problem(await c.get("/api/admin/crm"), 403)
    await center.login("admin", "b")
    assert (await _ok(await c.get("/api/admin/crm")))["has_auth_value"] is False


async def test_client_contacts_and_undelivered_things(center: Center) -> None:
    c = center.client
    h = await center.login("admin")
    tenant = center.tenant_id
    async with center.database.session() as session:
        queue = await Queues(session, tenant).add(Queue(name="support"))
        session.add_all([
            CrmPush(tenant_id=tenant, task_id="t1", event_seq=1, idempotency_key="contact.t1",
                    state="failed", attempts=10, last_error="HTTP 500"),
            ClientNotification(tenant_id=tenant, task_id="t1", idempotency_key="notify.t1",
                               recipient="x@client.example", state="failed", attempts=8,
                               last_error="SMTP refused")])
        customer = Customer(tenant_id=tenant, name="Maija")
        session.add(customer)
    _problem(await c.post("/api/admin/client-contacts", headers=h, json={
        "queue_id": "nope", "email": "x@client.example"}), 422)
    _problem(await c.post("/api/admin/client-contacts", headers=h, json={
        "queue_id": queue.id, "email": "not an address"}), 422)
    made = await _ok(await c.post("/api/admin/client-contacts", headers=h, json={
        "queue_id": queue.id, "email": "Paula@Client.Example", "urgent_codes": ["escalate"],
        "batch_minutes": 15}), 201)
    assert (made["id"], made["email"], made["queue_name"]) == (
        queue.id, "paula@client.example", "support")
    _problem(await c.put(f"/api/admin/client-contacts/{queue.id}", headers=h, json={
        "queue_id": "other", "email": "p@client.example"}), 422)
    changed = await _ok(await c.put(f"/api/admin/client-contacts/{queue.id}", headers=h,
                                    json={"email": "p@client.example", "urgent_priority": 50}))
    assert changed["urgent_priority"] == 50 and changed["urgent_codes"] == []
    assert [row["email"] for row in await _ok(await c.get("/api/admin/client-contacts"))] == [
        "p@client.example"]

    (push,) = await _ok(await c.get("/api/admin/crm/pushes?state=failed"))
    (email,) = await _ok(await c.get("/api/admin/client-notifications?state=failed"))
    assert push["last_error"] == "HTTP 500" and email["last_error"] == "SMTP refused"
    # The panel's CRM endpoint: no lookup configured is "off"; an unknown customer is 404.
    assert (await _ok(await c.get(f"/api/customers/{customer.id}/crm")))["state"] == "off"
    _problem(await c.get("/api/customers/nobody/crm"), 404)

    other = await center.login("admin", "b")
    assert await _ok(await c.get("/api/admin/crm/pushes")) == []
    _problem(await c.post(f"/api/admin/crm/pushes/{push['id']}/retry", headers=other), 404)
    _problem(await c.delete(f"/api/admin/client-contacts/{queue.id}", headers=other), 404)
    _problem(await c.get(f"/api/customers/{customer.id}/crm"), 404)

    h = await center.login("admin")
    await _ok(await c.post(f"/api/admin/crm/pushes/{push['id']}/retry", headers=h), 204)
    await _ok(await c.post(f"/api/admin/client-notifications/{email['id']}/retry", headers=h),
              204)
    assert await _ok(await c.get("/api/admin/crm/pushes?state=failed")) == []
    (pending,) = await _ok(await c.get("/api/admin/client-notifications?state=pending"))
    assert pending["attempts"] == 0
    await _ok(await c.delete(f"/api/admin/client-contacts/{queue.id}", headers=h), 204)
    assert await _ok(await c.get("/api/admin/client-contacts")) == []


async def test_the_configuration_file_carries_the_crm_without_secrets(center: Center) -> None:
    c = center.client
    h = await center.login("admin")
    async with center.database.session() as session:
        await Queues(session, center.tenant_id).add(Queue(name="support"))
        queue = await Queues(session, center.tenant_id).add(Queue(name="billing"))
    await _ok(await c.put("/api/admin/crm", headers=h, json=CONNECTOR))
    await _ok(await c.put(f"/api/admin/client-contacts/{queue.id}", headers=h, json={
        "email": "p@client.example", "urgent_codes": ["escalate"], "batch_minutes": 30}))
    exported = (await c.get("/api/admin/config")).text
    assert "secret-token" not in exported and "whsec_" not in exported
    document = yaml.safe_load(exported)
    assert document["crm"]["lookup_url"] == CONNECTOR["lookup_url"]
    assert document["crm"]["mapping"]["attributes"] == {"vip": "vip"}
    assert document["client_contacts"] == [{
        "queue": "billing", "email": "p@client.example", "is_enabled": True,
        "urgent_priority": None, "urgent_codes": ["escalate"], "batch_minutes": 30}]

    hb = await center.login("admin", "b")
    result = await _ok(await c.put("/api/admin/config", headers=hb, content=exported))
    assert (result["imported"]["crm"], result["imported"]["client_contacts"]) == (1, 1)
    again = yaml.safe_load((await c.get("/api/admin/config")).text)
    assert (again["crm"], again["client_contacts"]) == (document["crm"],
                                                        document["client_contacts"])
    connector = await _ok(await c.get("/api/admin/crm"))
    assert not connector["has_auth_value"] and connector["has_push_secret"]  # made for b

    bad = {**document, "client_contacts": [{"queue": "nowhere", "email": "p@client.example"}]}
    assert "unknown queue" in _problem(await c.put("/api/admin/config", headers=hb,
                                                   json=bad), 422)["detail"]
    emptied = {**document, "client_contacts": []}
    emptied.pop("crm")
    await _ok(await c.put("/api/admin/config?replace=true", headers=hb, json=emptied))
    assert await _ok(await c.get("/api/admin/client-contacts")) == []
    assert (await _ok(await c.get("/api/admin/crm")))["lookup_enabled"]  # no crm: left alone
