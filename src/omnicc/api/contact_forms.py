"""The website's contact form over HTTP: `POST /api/forms/contact?tenant=<slug>` (public, no
login: the embeddable `/static/contact-form.js` posts here, and so may any site's own form).

Rules in `omnicc.app.contact_forms`: each request is stored and routed as an email contact
with a response-time target; a honeypot field and limits per client and per address guard it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from omnicc.api.problems import problem, problem_type
from omnicc.app.callback_requests import NotPossibleNumber
from omnicc.app.contact_forms import ContactForms, ContactRequest, FormThrottled, InvalidField
from omnicc.app.routing import WallClock
from omnicc.app.runtime import ContactCenter

router = APIRouter(prefix="/api/forms", tags=["forms"])


class ContactAsk(BaseModel, extra="forbid"):
    queue_id: str = Field(min_length=1, max_length=64)
    email: str = Field(min_length=3, max_length=320, description="Where the answer goes.")
    message: str = Field(min_length=1, max_length=10_000)
    name: str = Field(default="", max_length=200)
    phone: str = Field(default="", max_length=40, description="Optional, best with the "
                       "country code.")
    subject: str = Field(default="", max_length=200)
    page: str = Field(default="", max_length=500, description="The page the form was on.")
    website: str = Field(default="", max_length=500,
                         description="Must stay empty: a field only bots fill in.")


class ContactReceiptView(BaseModel):
    reference: str = Field(description="The request's reference, also in the answer's subject.")
    respond_by: datetime = Field(description="The queue's response-time target.")


REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such tenant or queue."},
    409: {"description": "The queue is disabled."},
    422: {"description": "A field is wrong (`field` names it): not an email address, not a "
                         "possible phone number, an empty message."},
    429: {"description": "Too many requests from this address or for this email address; "
                         "see Retry-After."},
}


def _forms(request: Request) -> ContactForms:
    """One per server: the limits count across tenants (abuse is the server's concern)."""
    forms: ContactForms | None = getattr(request.app.state, "contact_forms", None)
    if forms is None:
        forms = ContactForms(request.app.state.database, WallClock(),
                             default_region=request.app.state.settings.phone_region or None)
        request.app.state.contact_forms = forms
    return forms


@router.post("/contact", status_code=202, response_model=ContactReceiptView,
             responses=REFUSALS,
             summary="A visitor's contact request: stored, routed, answered by email")
async def contact(request: Request, ask: ContactAsk,
                  tenant: str = Query(min_length=1, max_length=64)) -> Any:
    center: ContactCenter = request.app.state.center
    runtime = await center.by_slug(tenant)
    path = request.url.path
    try:
        receipt = await _forms(request).submit(runtime, ContactRequest(
            queue_id=ask.queue_id, email=ask.email, message=ask.message, name=ask.name,
            phone=ask.phone, subject=ask.subject, page=ask.page, trap=ask.website),
            client_ip=request.client.host if request.client else "unknown")
    except InvalidField as error:
        return problem(422, type_=problem_type("invalid-field"), title="Invalid field",
                       detail=str(error), instance=path, field=error.field)
    except NotPossibleNumber as error:
        return problem(422, type_=problem_type("invalid-phone-number"),
                       title="Not a phone number", detail=str(error), instance=path,
                       field="phone")
    except FormThrottled as error:
        return problem(429, type_=problem_type("too-many-requests"), detail=str(error),
                       instance=path, retry_after_s=error.retry_after_s,
                       headers={"Retry-After": str(error.retry_after_s)})
    return ContactReceiptView(reference=receipt.reference, respond_by=receipt.respond_by)
