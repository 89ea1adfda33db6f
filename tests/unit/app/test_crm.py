"""The CRM connector's pure parts: reading a CRM's answer by the mapping, the lookup request,
the bounded cache, and what makes a client notification urgent and how its email reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from omnicc.app.client_notifications import compose, is_urgent
from omnicc.app.crm import Lookup, LookupCache, as_flag, lookup_request, pick, read_answer
from omnicc.store.tables import ClientContact, ClientNotification, CrmConnector

HUBSPOT = {"total": 1, "results": [{"id": "51", "properties": {
    "firstname": "Maija", "company": "Kone Oy", "hs_lead_status": "OPEN", "tier": "gold",
    "vip": "Yes", "owner": "alice@acme.example", "url": "https://app.hubspot.com/contacts/51"}}]}
SALESFORCE = {"totalSize": 1, "records": [{"Name": "Maija", "Account": {"Name": "Kone Oy"},
                                           "VIP__c": True, "Tier__c": None}]}


def test_paths_walk_objects_and_lists() -> None:
    assert pick(HUBSPOT, "results[0].properties.company") == "Kone Oy"
    assert pick(SALESFORCE, "records.0.Account.Name") == "Kone Oy"
    assert pick(HUBSPOT, "results[1].properties") is None
    assert pick(HUBSPOT, "results[0].properties.company.name") is None
    assert pick(SALESFORCE, "records[0].Tier__c.x") is None
    assert pick([1, 2], "[1]") == 2


def test_an_answer_is_read_by_the_mapping() -> None:
    mapping = {"record": "results[0]", "link": "properties.url",
               "fields": [{"label": "Company", "path": "properties.company"},
                          {"label": "Missing", "path": "properties.nope"},
                          {"path": "properties.hs_lead_status"}],
               "attributes": {"segment": "properties.tier", "vip": "properties.vip",
                              "account_manager": "properties.owner",
                              "password": "properties.company"}}
    found = read_answer(mapping, HUBSPOT, 10.0)
    assert found.state == "found" and found.link == "https://app.hubspot.com/contacts/51"
    assert found.fields == [{"label": "Company", "value": "Kone Oy"},
                            {"label": "properties.hs_lead_status", "value": "OPEN"}]
    assert found.attributes == {"segment": "gold", "vip": True,
                                "account_manager": "alice@acme.example"}
    assert read_answer(mapping, {"results": []}, 10.0).state == "not_found"
    assert read_answer({"record": "records[0]", "attributes": {"vip": "VIP__c"}},
                       SALESFORCE, 1.0).attributes == {"vip": True}
    # A link must be a web address: a CRM cannot make the desk open javascript: or data: URLs.
    assert read_answer({"link": "u"}, {"u": "javascript:alert(1)"}, 1.0).link is None


def test_flags_as_crms_write_them() -> None:
    assert [as_flag(v) for v in (True, 1, "yes", "TRUE", "x", "VIP")] == [True] * 6
    assert [as_flag(v) for v in (False, 0, "no", "", "false", 0.0)] == [False] * 6


def test_the_lookup_request_fills_its_templates_safely() -> None:
    connector = CrmConnector(lookup_url="https://crm.example/find?phone={phone}&email={email}",
                             lookup_method="GET", lookup_body="", auth_header="X-Api-Key",
                             auth_value="k-1")
    request = lookup_request(connector, "+358401234567", "a&b@example.fi")
    assert str(request.url) == ("https://crm.example/find?phone=%2B358401234567"
                                "&email=a%26b%40example.fi")
    assert request.headers["X-Api-Key"] == "k-1" and request.method == "GET"
    connector.lookup_method = "POST"
    connector.lookup_body = '{"filters": [{"propertyName": "email", "value": "{email}"}]}'
    body = json.loads(lookup_request(connector, "", 'evil"}@example.fi').content)
    assert body["filters"][0]["value"] == 'evil"}@example.fi'


def test_the_cache_forgets_after_its_ttl_and_keeps_a_bounded_number() -> None:
    cache = LookupCache(per_tenant=2)
    for key, at in ((("1", ""), 0.0), (("2", ""), 1.0)):
        cache.put("t", key, Lookup("found", fetched_at=at))
    cache.put("t", ("3", ""), Lookup("timeout", fetched_at=2.0))  # a failure is not kept
    assert cache.size("t") == 2
    assert cache.get("t", ("1", ""), 60, 30.0) is not None  # now the most recently used
    cache.put("t", ("4", ""), Lookup("not_found", fetched_at=3.0))
    assert cache.get("t", ("2", ""), 60, 30.0) is None  # the least recently used went
    assert cache.get("t", ("1", ""), 60, 60.0) is None  # expired
    assert cache.get("other", ("4", ""), 60, 30.0) is None  # per tenant
    cache.forget("t")
    assert cache.size("t") == 0


def test_urgency_by_priority_or_wrap_up_code() -> None:
    rule = ClientContact(urgent_priority=50, urgent_codes=["escalate"])
    assert is_urgent(rule, 50, None) and is_urgent(rule, 0, "escalate")
    assert not is_urgent(rule, 49, "solved")
    assert not is_urgent(ClientContact(urgent_priority=None, urgent_codes=[]), 10**6, "x")


def _row(name: str, *, urgent: bool = False) -> ClientNotification:
    return ClientNotification(recipient="paula@client.example", is_urgent=urgent, payload={
        "channel": "voice", "direction": "inbound", "queue": {"name": "support"},
        "customer": {"name": name, "phone": "+358401234567"}, "agent": {"name": "Alice"},
        "disposition": {"code": "solved", "label": "Solved"}, "summary": "Refund promised",
        "ended_at": "2026-11-23T09:30:00+00:00"})


def test_the_emails_read_well() -> None:
    now = datetime(2026, 11, 23, 9, 31, tzinfo=UTC)
    urgent = compose([_row("Pekka", urgent=True)], sender="support@acme.example",
                     message_id="<n.1@omnicc>", now=now)
    assert urgent["Subject"] == "URGENT: Handled voice contact in support - Pekka"
    assert urgent["Importance"] == "high" and urgent["Auto-Submitted"] == "auto-generated"
    text = urgent.get_content()
    assert "Customer: Pekka / +358401234567" in text and "Handled by: Alice" in text
    assert "Outcome: solved - Solved" in text and text.rstrip().endswith("Refund promised")
    digest = compose([_row("Maija"), _row("Liisa")], sender="s@acme.example",
                     message_id="<n.2@omnicc>", now=now)
    assert digest["Subject"] == "2 handled contacts in support" and digest["Importance"] is None
    assert "--- 2 of 2 ---" in digest.get_content()
