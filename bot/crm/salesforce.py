"""Salesforce: Outbound Messages (SOAP) for Opportunities in, a REST update of the Opportunity out.

Outbound Messages carry no signature: a message is trusted when its URL carries our token (checked
by the route) and its `OrganizationId` is ours. Each notification has an id of its own, which is
the event's idempotency key: Salesforce resends a message until it gets an `Ack`, for up to 24
hours, and may deliver notifications out of order.

The sweep and the import read Opportunities with a SOQL query instead (`list_deal_changes`), which
reaches the owner's email through the Owner relationship, so they need no formula field.

Outbound Messaging: https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_notifications.htm
WSDL (envelope, Ack): https://developer.salesforce.com/docs/platform/api/guide/sforce-api-om-outboundmessaging-wsdl.html
Query: https://developer.salesforce.com/docs/platform/api-rest/guide/resources-query.html
"""

import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import defusedxml.ElementTree as defused_ET
from defusedxml import DefusedXmlException

from bot.crm.api import CrmApiError, DealPage, WriteBack, call_json, closed_since, wait_out_rate_limits
from bot.crm.event import (
    CLOSED_LOST,
    CLOSED_WON,
    OPEN,
    DealEvent,
    FieldError,
    PayloadError,
    is_storable,
    parse_amount,
    parse_currency,
)

logger = logging.getLogger(__name__)

SOURCE = "salesforce"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
SOBJECT = "urn:sobject.enterprise.soap.sforce.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100
API_VERSION = "v61.0"
# Salesforce does not say how long its tokens last; they are fetched again on a 401 in any case.
TOKEN_LIFETIME_SECONDS = 15 * 60
# Pages of 500 (Salesforce's default is 2,000) keep each page's transaction short beside the webhooks'.
QUERY_BATCH_SIZE = 500
MAX_NAME_LENGTH = 500
# A field's API name, as SOQL takes it unquoted: letters, digits and underscores (`Loss_Reason__c`).
FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    base_url: str | None
    """The org's URL, from `PartnerUrl`, for links to the Opportunities."""
    notifications: list[ET.Element] = field(repr=False)


def read_outbound_message(body: bytes) -> OutboundMessage:
    """The envelope of an Outbound Message: its organization, and its notifications unread.
    Raises PayloadError for any body that is not one (the only error it raises, whatever the bytes).

    Salesforce never sends a DTD. defusedxml refuses one, and with it every entity and external
    reference, as the parser meets it, so whatever encoding the body declares (UTF-16 hides the
    bytes `<!DOCTYPE` from a byte search) nothing is expanded or fetched."""
    try:
        root = defused_ET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        message = "a document type declaration (DTD), entity or external reference is not allowed"
        raise PayloadError([FieldError(None, None, message)]) from None
    except ET.ParseError as error:
        raise PayloadError([FieldError(None, None, f"the body is not XML: {error}")]) from None
    except LookupError as error:  # the XML declaration names an encoding Python does not know
        raise PayloadError([FieldError(None, None, f"the body is not XML: {error}")]) from None
    message = root.find(f"{{{SOAP}}}Body/{{{OUTBOUND}}}notifications")
    if root.tag != f"{{{SOAP}}}Envelope" or message is None:
        raise PayloadError([FieldError(None, None, "the body is not a SOAP envelope with notifications")])
    organization_id = _text(message.find(f"{{{OUTBOUND}}}OrganizationId"))
    if organization_id is None:
        raise PayloadError([FieldError(None, "OrganizationId", "required")])
    notifications = message.findall(f"{{{OUTBOUND}}}Notification")
    if not 0 < len(notifications) <= MAX_NOTIFICATIONS:
        message_text = f"a message carries 1 to {MAX_NOTIFICATIONS} notifications, not {len(notifications)}"
        raise PayloadError([FieldError(None, "Notification", message_text)])
    base_url = _base_url(_text(message.find(f"{{{OUTBOUND}}}PartnerUrl")))
    return OutboundMessage(organization_id=organization_id, base_url=base_url, notifications=notifications)


def _base_url(partner_url: str | None) -> str | None:
    """`https://` and the host of `PartnerUrl`; None when it is not an https:// URL, which only
    costs the deals their links."""
    try:
        parts = urlsplit(partner_url or "")
    except ValueError:  # such as an unclosed IPv6 address, https://[
        return None
    return f"https://{parts.netloc}" if parts.scheme == "https" and parts.netloc else None


def is_our_organization(organization_id: str, ours: str) -> bool:
    """Salesforce sends the 18-character id; an admin may have copied the 15-character one, which is
    its first 15 characters (the last 3 only encode letter case)."""
    return organization_id[:15] == ours[:15]


def parse_opportunities(
    message: OutboundMessage, *, owner_email_field: str, reason_field: str | None
) -> list[DealEvent]:
    """One event per notification, in order; or PayloadError naming every problem of every
    notification (the only error it raises), so that a message is stored whole or not at all."""
    events: list[DealEvent] = []
    errors: list[FieldError] = []
    for index, notification in enumerate(message.notifications):
        event_or_errors = _parse_notification(
            notification, index, message.base_url, owner_email_field=owner_email_field, reason_field=reason_field
        )
        if isinstance(event_or_errors, DealEvent):
            events.append(event_or_errors)
        else:
            errors.extend(event_or_errors)
    if errors:
        raise PayloadError(errors)
    return events


def _parse_notification(
    notification: ET.Element, index: int, base_url: str | None, *, owner_email_field: str, reason_field: str | None
) -> DealEvent | list[FieldError]:
    notification_id = _text(notification.find(f"{{{OUTBOUND}}}Id"))
    opportunity = notification.find(f"{{{OUTBOUND}}}sObject")
    if notification_id is None or opportunity is None:
        return [FieldError(index, "Notification", "each notification has an Id and an sObject")]
    if (opportunity.get(f"{{{XSI}}}type") or "").rpartition(":")[2] != "Opportunity":
        return [FieldError(index, "sObject", "the outbound message must be on the Opportunity object")]

    def value(name: str) -> str | None:
        return _text(opportunity.find(f"{{{SOBJECT}}}{name}"))

    errors: list[FieldError] = []
    fields = {name: value(name) for name in ("Id", "Name", "IsClosed", "IsWon", "LastModifiedDate")}
    for name, found in fields.items():
        if found is None:
            errors.append(FieldError(index, name, "required: add this field to the outbound message"))
    owner_email = value(owner_email_field)
    if owner_email is None or "@" not in owner_email:
        message = "required: the owner's email, from a formula field added to the outbound message"
        errors.append(FieldError(index, owner_email_field, message))
    changed_at = _time(fields["LastModifiedDate"])
    if fields["LastModifiedDate"] is not None and changed_at is None:
        errors.append(FieldError(index, "LastModifiedDate", "must be a dateTime such as 2024-06-10T14:51:00.000Z"))
    if errors:
        return errors
    assert changed_at is not None and owner_email is not None
    opportunity_id = fields["Id"] or ""
    if fields["IsClosed"] == "true":
        stage = CLOSED_WON if fields["IsWon"] == "true" else CLOSED_LOST
    else:
        stage = OPEN
    return DealEvent(
        source=SOURCE,
        deal_id=opportunity_id,
        name=fields["Name"] or "",
        stage=stage,
        owner_email=owner_email.lower(),
        owner_slack_id=None,
        changed_at=changed_at,
        amount=parse_amount(value("Amount")),
        currency=parse_currency(value("CurrencyIsoCode")),
        url=f"{base_url}/{opportunity_id}" if base_url else None,
        crm_reason=value(reason_field) if reason_field else None,
        event_id=notification_id,
        raw={"notification_id": notification_id, **{child.tag.rpartition("}")[2]: child.text for child in opportunity}},
    )


def _text(element: ET.Element | None) -> str | None:
    if element is None or element.get(f"{{{XSI}}}nil") == "true" or element.text is None:
        return None
    return element.text.strip() or None


def _time(value: str | None) -> datetime | None:
    """The time in UTC; None for no time, a time without its offset, or one whose instant in UTC
    falls outside the years 1 to 9999."""
    try:
        parsed = datetime.fromisoformat(value) if value else None
        return parsed.astimezone(UTC) if parsed is not None and parsed.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


def build_ack() -> bytes:
    """The reply that tells Salesforce every notification of the message is taken."""
    return _envelope(_element(f"{{{OUTBOUND}}}notificationsResponse", _element(f"{{{OUTBOUND}}}Ack", "true")))


def build_fault(message: str, *, client_error: bool) -> bytes:
    """A SOAP fault: Salesforce shows its text in the outbound message delivery status."""
    code = "soapenv:Client" if client_error else "soapenv:Server"
    return _envelope(_element(f"{{{SOAP}}}Fault", _element("faultcode", code), _element("faultstring", message)))


def _element(tag: str, *children: ET.Element | str) -> ET.Element:
    element = ET.Element(tag)
    for child in children:
        if isinstance(child, str):
            element.text = child
        else:
            element.append(child)
    return element


def _envelope(content: ET.Element) -> bytes:
    ET.register_namespace("soapenv", SOAP)
    envelope = _element(f"{{{SOAP}}}Envelope", _element(f"{{{SOAP}}}Body", content))
    return ET.tostring(envelope, encoding="utf-8", xml_declaration=True)


class SalesforceClient:
    """REST calls with a token from the OAuth 2.0 client credentials flow.
    https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_client_credentials_flow.htm"""

    def __init__(self, http: aiohttp.ClientSession, *, instance_url: str, client_id: str, client_secret: str) -> None:
        self._http = http
        self._instance_url = instance_url
        self._credentials = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
        self._token: tuple[str, float] | None = None

    @property
    def instance_url(self) -> str:
        return self._instance_url

    async def update_opportunity(self, opportunity_id: str, fields: dict[str, str]) -> None:
        """PATCH /services/data/vXX.X/sobjects/Opportunity/{id}."""
        await self._call("PATCH", f"/services/data/{API_VERSION}/sobjects/Opportunity/{opportunity_id}", fields)

    async def query(self, soql: str) -> dict[str, Any]:
        """GET /services/data/vXX.X/query: the first batch of records (`records`, `done`, `nextRecordsUrl`)."""
        return await self._query(f"/services/data/{API_VERSION}/query?q={quote(soql, safe='')}")

    async def query_more(self, next_records_url: str) -> dict[str, Any]:
        """The next batch of a query, from the previous batch's `nextRecordsUrl` (a path on the instance)."""
        if not next_records_url.startswith("/services/data/"):
            raise CrmApiError(f"Salesforce answered a query with an unexpected nextRecordsUrl {next_records_url!r}")
        return await self._query(next_records_url)

    async def _query(self, path: str) -> dict[str, Any]:
        answer = await self._call("GET", path, None, headers={"Sforce-Query-Options": f"batchSize={QUERY_BATCH_SIZE}"})
        if not isinstance(answer, dict) or not isinstance(answer.get("records"), list):
            raise CrmApiError("Salesforce answered a query without a list of records")
        return answer

    async def _call(self, method: str, path: str, body: Any, *, headers: dict[str, str] | None = None) -> Any:
        """One call with the access token; a refused token is renewed once."""
        try:
            return await self._call_once(method, path, body, headers or {})
        except CrmApiError as error:
            if error.status != 401:
                raise
            self._token = None
            return await self._call_once(method, path, body, headers or {})

    async def _call_once(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        headers = {**headers, "Authorization": f"Bearer {await self._access_token()}"}
        return await call_json(
            self._http, method, self._instance_url + path, crm="Salesforce", headers=headers, json_body=body
        )

    async def _access_token(self) -> str:
        if self._token is not None and time.monotonic() < self._token[1]:
            return self._token[0]
        try:
            answer: Any = await call_json(
                self._http,
                "POST",
                self._instance_url + "/services/oauth2/token",
                crm="Salesforce",
                headers={},
                data=self._credentials,
            )
        except CrmApiError as error:
            # Refused credentials are fixed by the admin, after which every waiting write must go.
            raise CrmApiError(str(error), status=error.status, retry_after=error.retry_after) from None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise CrmApiError("Salesforce answered the token request without an access_token")
        self._token = (token, time.monotonic() + TOKEN_LIFETIME_SECONDS)
        return token


async def list_deal_changes(
    client: SalesforceClient,
    *,
    since: datetime,
    closed_only: bool = False,
    reason_field: str | None,
) -> AsyncIterator[DealPage]:
    """The Opportunities modified at or after `since` (`SystemModstamp`), oldest first, in batches
    of up to 500, each as the DealEvent an outbound message about it would make now
    (`LastModifiedDate` orders it); the owner's email comes from `Owner.Email`. `closed_only` keeps
    the closed ones (lost or won), and reads their `CloseDate` as `closed_at` (the start of that day
    in UTC: Salesforce gives the day an Opportunity closed, not the time). Otherwise `closed_at`
    stays None. A record that cannot be read is left out with a warning.

    Short 429s are waited out; other failures raise CrmApiError, after the pages already yielded.
    """
    if reason_field is not None and not FIELD_NAME.fullmatch(reason_field):
        raise CrmApiError(f"SALESFORCE_REASON_FIELD {reason_field!r} is not a field's API name", permanent=True)
    fields = ["Id", "Name", "Amount", "IsClosed", "IsWon", "LastModifiedDate", "SystemModstamp", "Owner.Email"]
    if reason_field is not None:
        fields.append(reason_field)
    conditions = [f"SystemModstamp >= {since.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"]
    if closed_only:
        fields.append("CloseDate")
        conditions.append("IsClosed = true")
    soql = (
        f"SELECT {', '.join(fields)} FROM Opportunity WHERE {' AND '.join(conditions)}"
        " ORDER BY SystemModstamp ASC, Id ASC"
    )
    answer = await wait_out_rate_limits(partial(client.query, soql))
    newest = since
    while True:
        events = []
        for record in answer["records"]:
            read = _listed_opportunity(record, instance_url=client.instance_url, reason_field=reason_field)
            if read is None:
                continue
            event, modified = read
            newest = max(newest, modified)
            events.append(event)
        if answer["records"]:
            yield DealPage(events=events, cursor=newest)
        next_records_url = answer.get("nextRecordsUrl")
        if answer.get("done") is not False or not isinstance(next_records_url, str):
            return
        answer = await wait_out_rate_limits(partial(client.query_more, next_records_url))


async def list_closed_deals(
    client: SalesforceClient, *, since: datetime, reason_field: str | None
) -> AsyncIterator[DealPage]:
    """The closed Opportunities (lost or won) whose `CloseDate` is on or after the day of `since`,
    dated by it (`closed_since`), found among those modified since then, with the paging and 429
    waits of `list_deal_changes`."""
    async for page in list_deal_changes(client, since=since, closed_only=True, reason_field=reason_field):
        yield closed_since(page, _start_of_day(since.astimezone(UTC).date()))


def _listed_opportunity(
    record: Any, *, instance_url: str, reason_field: str | None
) -> tuple[DealEvent, datetime] | None:
    """An Opportunity record as a DealEvent, with its SystemModstamp; None (and a warning) for a
    record that cannot be read."""
    if not isinstance(record, dict) or not is_storable(record):
        logger.warning("Salesforce listed an Opportunity that is not an object of storable text: left out")
        return None
    opportunity_id, name = record.get("Id"), record.get("Name")
    changed_at, modified = _time(record.get("LastModifiedDate")), _time(record.get("SystemModstamp"))
    if not isinstance(opportunity_id, str) or not isinstance(name, str) or changed_at is None or modified is None:
        logger.warning("Salesforce Opportunity %s lacks an Id, Name or modification time: left out", opportunity_id)
        return None
    owner = record.get("Owner")
    owner_email = owner.get("Email") if isinstance(owner, dict) else None
    reason = record.get(reason_field) if reason_field is not None else None
    if record.get("IsClosed") is True:
        stage = CLOSED_WON if record.get("IsWon") is True else CLOSED_LOST
    else:
        stage = OPEN
    event = DealEvent(
        source=SOURCE,
        deal_id=opportunity_id,
        name=name.strip()[:MAX_NAME_LENGTH] or f"Salesforce Opportunity {opportunity_id}",
        stage=stage,
        owner_email=owner_email.lower() if isinstance(owner_email, str) and "@" in owner_email else None,
        owner_slack_id=None,
        changed_at=changed_at,
        amount=parse_amount(record.get("Amount")),
        url=f"{instance_url}/{opportunity_id}",
        crm_reason=reason.strip() or None if isinstance(reason, str) else None,
        closed_at=_close_date(record.get("CloseDate")) if stage != OPEN else None,
        raw=record,
    )
    return event, modified


def _close_date(value: Any) -> datetime | None:
    """`CloseDate` (`2026-01-14`) as the start of that day in UTC; None when absent or not a date."""
    if not isinstance(value, str):
        return None
    try:
        return _start_of_day(date.fromisoformat(value))
    except ValueError:
        return None


def _start_of_day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def write_back(
    client: SalesforceClient, reason: WriteBack, *, reason_field: str, explanation_field: str | None
) -> None:
    fields = {reason_field: reason.reason}
    if explanation_field:
        fields[explanation_field] = reason.explanation
    await client.update_opportunity(reason.deal_id, fields)
