"""Property tests (hypothesis) of the Salesforce parser (`read_outbound_message`, then
`parse_opportunities`, as the route calls them): whatever bytes arrive, it returns events, or
raises PayloadError naming what is wrong; never anything else.

The bodies are arbitrary bytes, the documented Outbound Message with bytes replaced, and messages
built in its shape with fields left out, nil or set to odd values (dates at the ends of the
calendar, numbers no column takes, links that are not links, long text), in UTF-8, UTF-16 or
ISO-8859-1, sometimes with a document type declaration."""

from datetime import datetime, timedelta, timezone
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.crm import salesforce
from bot.crm.event import CLOSED_LOST, CLOSED_WON, OPEN, DealEvent, FieldError, PayloadError
from tests.test_salesforce import with_owner_email

MESSAGE = with_owner_email((Path(__file__).parent / "fixtures" / "crm" / "salesforce_outbound.xml").read_text())
SOBJECT = "urn:sobject.enterprise.soap.sforce.com"
OPPORTUNITY_FIELDS = (
    "Id",
    "Name",
    "IsClosed",
    "IsWon",
    "LastModifiedDate",
    "Owner_Email__c",
    "Amount",
    "CurrencyIsoCode",
    "Loss_Reason__c",
)

# Bounded so that the file runs in seconds: a new bug is usually found in the first hundred.
PARSER_RUNS = settings(max_examples=200, deadline=None)


def parse(body: bytes) -> list[DealEvent]:
    message = salesforce.read_outbound_message(body)
    return salesforce.parse_opportunities(message, owner_email_field="Owner_Email__c", reason_field="Loss_Reason__c")


def assert_events_or_payload_error(body: bytes) -> None:
    """The property: events, each with what a deal needs, or a PayloadError of FieldErrors."""
    try:
        events = parse(body)
    except PayloadError as error:
        assert error.errors and all(isinstance(problem, FieldError) and problem.message for problem in error.errors)
        return
    assert 0 < len(events) <= salesforce.MAX_NOTIFICATIONS
    for event in events:
        assert event.source == salesforce.SOURCE and event.stage in {CLOSED_LOST, CLOSED_WON, OPEN}
        assert event.deal_id and event.name and event.owner_email and event.event_id
        assert event.changed_at.utcoffset() is not None


# Characters XML 1.0 can carry (https://www.w3.org/TR/xml/#charsets): no controls but tab and
# newline, no surrogates, no U+FFFE / U+FFFF.
xml_characters = st.characters(
    blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"
) | st.sampled_from(["\t", "\n", "İ", "ß", "\u202e", "\ufeff", "&", "<", ">"])
texts = st.text(xml_characters, max_size=40)
ODD_VALUES = [
    "",
    " ",
    "true",
    "TRUE",
    "2024-06-10",
    "2024-06-10T14:51:00",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "1e999999",
    "NaN",
    "-Infinity",
    "-1",
    "99999999999999999999",
    "@",
    "https://[",
    "https://[::1",
    "https://acme.my.salesforce.com:99999/x",
    "x" * 3000,
]
# Each part of the message as the documented one has it, and values odd for that part.
DOCUMENTED = {
    "OrganizationId": "00D5g000004XyZaEAK",
    "PartnerUrl": "https://acme.my.salesforce.com/services/Soap/u/61.0/00D5g000004XyZa",
    "NotificationId": "04l5g00000QwErTAAZ",
    "Id": "0065g00000LmNoPAAV",
    "Name": "Globex - 250 seats",
    "IsClosed": "true",
    "IsWon": "false",
    "LastModifiedDate": "2024-06-10T14:51:00.000Z",
    "Owner_Email__c": "dana@example.com",
    "Amount": "48000.0",
    "CurrencyIsoCode": "USD",
    "Loss_Reason__c": "Price",
}
offsets = st.none() | st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
ODD_FOR = {
    "PartnerUrl": texts.map(lambda text: "https://" + text),
    "LastModifiedDate": st.datetimes(timezones=offsets).map(datetime.isoformat),
    "Amount": st.decimals().map(str) | st.floats().map(repr),
    "IsClosed": st.sampled_from(["true", "false"]),
    "IsWon": st.sampled_from(["true", "false"]),
    "Owner_Email__c": texts.map(lambda text: text + "@" + text),
}


# Mostly as documented, so that most messages get past the first problem to the next part.
FORMS = ["documented"] * 12 + ["odd"] * 5 + ["nil", "empty", "absent"]


@st.composite
def elements(draw: st.DrawFn, part: str, tag: str) -> str:
    """The part as documented, an odd value, nil, empty, or left out."""
    form = draw(st.sampled_from(FORMS))
    if form == "absent":
        return ""
    if form == "nil":
        return f'<{tag} xsi:nil="true"/>'
    if form == "empty":
        return f"<{tag}/>"
    odd = ODD_FOR.get(part, st.nothing()) | st.sampled_from(ODD_VALUES) | texts
    value = DOCUMENTED[part] if form == "documented" else draw(odd)
    return f"<{tag}>{escape(value)}</{tag}>"


@st.composite
def notifications(draw: st.DrawFn) -> str:
    object_type = draw(st.sampled_from(["sf:Opportunity", "sf:Opportunity", "Opportunity", "sf:Account", ""]))
    fields = "".join(draw(elements(name, f"sf:{name}")) for name in OPPORTUNITY_FIELDS)
    opportunity = f"<sObject xsi:type={quoteattr(object_type)} xmlns:sf={quoteattr(SOBJECT)}>{fields}</sObject>"
    if not draw(st.sampled_from([True] * 9 + [False])):
        opportunity = ""
    return f"<Notification>{draw(elements('NotificationId', 'Id'))}{opportunity}</Notification>"


@st.composite
def outbound_messages(draw: st.DrawFn) -> bytes:
    """A message in the documented shape, its parts drawn, encoded as its declaration says."""
    body = (
        draw(elements("OrganizationId", "OrganizationId"))
        + draw(elements("PartnerUrl", "PartnerUrl"))
        + "".join(draw(notifications()) for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))))
    )
    namespace = draw(st.sampled_from(["http://soap.sforce.com/2005/09/outbound"] * 5 + ["urn:other"]))
    encoding = draw(st.sampled_from(["UTF-8", "UTF-16", "ISO-8859-1"]))
    doctype = draw(st.sampled_from([""] * 8 + ["<!DOCTYPE soapenv:Envelope>", '<!DOCTYPE x [<!ENTITY a "b">]>']))
    document = (
        f'<?xml version="1.0" encoding="{encoding}"?>{doctype}'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f'<soapenv:Body><notifications xmlns="{namespace}">{body}</notifications></soapenv:Body>'
        "</soapenv:Envelope>"
    )
    return document.encode(encoding, "xmlcharrefreplace")


@PARSER_RUNS
@given(st.binary(max_size=2000))
def test_any_bytes_give_events_or_a_payload_error(body: bytes) -> None:
    assert_events_or_payload_error(body)


@PARSER_RUNS
@given(st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=8)), min_size=1, max_size=5))
# Found by this test in CI: the declaration's encoding="UTF-8" turned into "ATF-8", which Python does not know.
@example([(30, b"A")])
def test_the_documented_message_with_bytes_replaced_gives_events_or_a_payload_error(
    changes: list[tuple[int, bytes]],
) -> None:
    body = bytearray(MESSAGE.encode())
    for position, replacement in changes:
        at = position % len(body)
        body[at : at + len(replacement)] = replacement
    assert_events_or_payload_error(bytes(body))


@PARSER_RUNS
@given(outbound_messages())
# Found by this test: a time whose instant in UTC is before year 1, and a PartnerUrl urlsplit refuses.
@example(MESSAGE.replace("2024-06-10T14:51:00.000Z", "0001-01-01T00:00:00+05:00").encode())
@example(MESSAGE.replace("https://acme.my.salesforce.com/services/Soap/u", "https://[/services/Soap/u").encode())
def test_messages_in_the_documented_shape_with_odd_fields_give_events_or_a_payload_error(body: bytes) -> None:
    assert_events_or_payload_error(body)


def test_the_documented_message_gives_its_event() -> None:
    """The property holds for the message the others are made from, as an event, not an error."""
    (event,) = parse(MESSAGE.encode())

    assert (event.deal_id, event.stage) == ("0065g00000LmNoPAAV", CLOSED_LOST)
