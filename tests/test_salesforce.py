"""POST /webhooks/salesforce over real HTTP with Outbound Messages (SOAP) in Salesforce's shape: the
Ack only once stored, the organization checked, notifications deduplicated and ordered."""

import asyncio
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Deal, DealEventRecord, Loss
from tests.bot_client import BotClient
from tests.bot_process import bot_process, free_port
from tests.conftest import make_settings, serve
from tests.fake_slack import FakeSlack

FIXTURES = Path(__file__).parent / "fixtures" / "crm"
MESSAGE = (FIXTURES / "salesforce_outbound.xml").read_text()
ORG_ID_18 = "00D5g000004XyZaEAK"
WEBHOOK_TOKEN = "k3Jd9-QpX2_vR7wLm0Zt"
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
OUTBOUND = "{http://soap.sforce.com/2005/09/outbound}"
SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


@pytest.fixture
async def salesforce_bot(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> AsyncIterator[BotClient]:
    settings = make_settings(
        database_url,
        fake_slack.url,
        salesforce_org_id=ORG_ID_18[:15],  # as an admin copies it from Company Information
        salesforce_webhook_token=WEBHOOK_TOKEN,
        salesforce_owner_email_field="Owner_Email__c",
        salesforce_reason_field="Loss_Reason__c",
    )
    async with serve(settings, fake_slack, session_factory) as client:
        yield client


def with_owner_email(message: str, email: str = "dana@example.com") -> str:
    """The fixture with the owner-email formula field the README has the admin add."""
    return message.replace("<sf:OwnerId>", f"<sf:Owner_Email__c>{email}</sf:Owner_Email__c>\n     <sf:OwnerId>")


def notification(notification_id: str, *, opportunity_id: str, closed: bool, won: bool, modified: str) -> str:
    """One more Notification element, shaped like the fixture's."""
    return f"""<Notification>
    <Id>{notification_id}</Id>
    <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>{opportunity_id}</sf:Id>
     <sf:IsClosed>{str(closed).lower()}</sf:IsClosed>
     <sf:IsWon>{str(won).lower()}</sf:IsWon>
     <sf:LastModifiedDate>{modified}</sf:LastModifiedDate>
     <sf:Name>Opportunity {opportunity_id}</sf:Name>
     <sf:Owner_Email__c>dana@example.com</sf:Owner_Email__c>
    </sObject>
   </Notification>"""


def message_with(*notifications: str) -> str:
    """The fixture's envelope carrying these notifications instead of its own."""
    return re.sub(r"<Notification>.*</Notification>", "\n".join(notifications), MESSAGE, flags=re.DOTALL)


async def post_salesforce(
    bot: BotClient, body: str | bytes, *, url: str = f"/webhooks/salesforce?token={WEBHOOK_TOKEN}"
) -> tuple[int, ET.Element]:
    """POSTs to the endpoint URL README has the admin give Salesforce (the token in its query)."""
    data = body.encode() if isinstance(body, str) else body
    async with bot.http.post(url, data=data, headers=SOAP_HEADERS) as response:
        assert response.content_type == "text/xml"
        return response.status, ET.fromstring(await response.read())


def acked(reply: ET.Element) -> bool:
    ack = reply.find(f"{SOAP}Body/{OUTBOUND}notificationsResponse/{OUTBOUND}Ack")
    return ack is not None and ack.text == "true"


def fault(reply: ET.Element) -> str:
    found = reply.find(f"{SOAP}Body/{SOAP}Fault/faultstring")
    assert found is not None and found.text
    return found.text


async def test_the_documented_message_is_stored_then_acknowledged(salesforce_bot: BotClient) -> None:
    status, reply = await post_salesforce(salesforce_bot, with_owner_email(MESSAGE))

    assert status == 200 and acked(reply)
    (deal,) = await salesforce_bot.rows(Deal)
    assert (deal.source, deal.external_id, deal.name, deal.stage) == (
        "salesforce",
        "0065g00000LmNoPAAV",
        "Globex - 250 seats",
        "closed_lost",
    )
    assert (deal.amount, deal.owner_email, deal.crm_reason) == (Decimal("48000.00"), "dana@example.com", "Price")
    assert deal.url == "https://acme.my.salesforce.com/0065g00000LmNoPAAV"
    (record,) = await salesforce_bot.rows(DealEventRecord)
    assert record.idempotency_key == "salesforce:event:04l5g00000QwErTAAZ"
    (prompt,) = await salesforce_bot.slack.wait_for("chat.postMessage")
    assert prompt["channel"] == "U0DANA001"


async def test_text_longer_than_its_column_is_cut_to_fit_and_stored(salesforce_bot: BotClient) -> None:
    """Names, ids, the owner's email and the link, each longer than its column: the notification is
    stored and acknowledged rather than refused or failing, on PostgreSQL too, which enforces the
    column lengths."""
    name = "Globex - " + "250 seats, " * 500
    email = "Dana." + "d" * 400 + "@Example.com"
    opportunity_id = "0065g00000LmNoPAAV" * 20
    notification_id = "04l5g00000QwErTAAZ" * 40
    host = "acme-" + "sales-" * 400 + ".my.salesforce.com"
    reason = "Price. " * 10000  # a text column: kept whole
    message = (
        with_owner_email(MESSAGE, email)
        .replace("Globex - 250 seats", name[:5000])
        .replace("0065g00000LmNoPAAV", opportunity_id)
        .replace("04l5g00000QwErTAAZ", notification_id)
        .replace("acme.my.salesforce.com", host)
        .replace(">Price<", f">{reason}<")
    )

    status, reply = await post_salesforce(salesforce_bot, message)

    assert status == 200 and acked(reply)
    (deal,) = await salesforce_bot.rows(Deal)
    assert (deal.external_id, deal.name, deal.owner_email) == (opportunity_id[:255], name[:500], email.lower()[:320])
    assert deal.url == f"https://{host}/{opportunity_id}"[:2000]
    assert deal.crm_reason == reason.strip()
    (record,) = await salesforce_bot.rows(DealEventRecord)
    assert record.idempotency_key == f"salesforce:event:{notification_id[:255]}"
    assert len(await salesforce_bot.rows(Loss)) == 1


async def test_a_partner_url_that_is_not_a_url_costs_the_deal_its_link_only(salesforce_bot: BotClient) -> None:
    message = with_owner_email(MESSAGE).replace("https://acme.my.salesforce.com/services/Soap/u", "https://[/x")

    status, reply = await post_salesforce(salesforce_bot, message)

    assert status == 200 and acked(reply)
    (deal,) = await salesforce_bot.rows(Deal)
    assert (deal.external_id, deal.url) == ("0065g00000LmNoPAAV", None)


async def test_the_ack_is_the_documented_envelope(salesforce_bot: BotClient) -> None:
    expected = ET.fromstring((FIXTURES / "salesforce_outbound_ack.xml").read_bytes())

    _, reply = await post_salesforce(salesforce_bot, with_owner_email(MESSAGE))

    assert [(element.tag, (element.text or "").strip()) for element in reply.iter()] == [
        (element.tag, (element.text or "").strip()) for element in expected.iter()
    ]


async def test_a_resent_message_is_acknowledged_again_with_one_effect(salesforce_bot: BotClient) -> None:
    first = await post_salesforce(salesforce_bot, with_owner_email(MESSAGE))
    again = await post_salesforce(salesforce_bot, with_owner_email(MESSAGE))

    assert acked(first[1]) and acked(again[1])
    assert len(await salesforce_bot.rows(DealEventRecord)) == 1
    assert len(await salesforce_bot.rows(Loss)) == 1
    await salesforce_bot.slack.wait_for("chat.postMessage")
    assert len(salesforce_bot.slack.calls_to("chat.postMessage")) == 1


async def test_notifications_delivered_out_of_order_leave_the_newest_state(salesforce_bot: BotClient) -> None:
    reopened = notification(
        "04l000000000002AAA", opportunity_id="006A", closed=False, won=False, modified="2024-06-11T09:00:00.000Z"
    )
    lost = notification(
        "04l000000000001AAA", opportunity_id="006A", closed=True, won=False, modified="2024-06-10T14:51:00.000Z"
    )

    newer_first = await post_salesforce(salesforce_bot, message_with(reopened))
    older_later = await post_salesforce(salesforce_bot, message_with(lost))

    assert acked(newer_first[1]) and acked(older_later[1])
    (deal,) = await salesforce_bot.rows(Deal)
    assert deal.stage == "open"
    assert [(r.stage, r.applied) for r in await salesforce_bot.rows(DealEventRecord)] == [
        ("open", True),
        ("closed_lost", False),
    ]
    assert await salesforce_bot.rows(Loss) == []


async def test_a_message_of_100_notifications_is_stored_whole(salesforce_bot: BotClient) -> None:
    notifications = [
        notification(
            f"04l{n:015d}",
            opportunity_id=f"006{n:015d}",
            closed=True,
            won=n % 2 == 0,
            modified="2024-06-10T14:51:00.000Z",
        )
        for n in range(100)
    ]

    status, reply = await post_salesforce(salesforce_bot, message_with(*notifications))

    assert status == 200 and acked(reply)
    stages = [deal.stage for deal in await salesforce_bot.rows(Deal)]
    assert (len(stages), stages.count("closed_lost"), stages.count("closed_won")) == (100, 50, 50)


# --- refused, no Ack, nothing stored -------------------------------------------------------------


async def test_another_organization_gets_a_403_and_no_ack(salesforce_bot: BotClient) -> None:
    other = with_owner_email(MESSAGE).replace(ORG_ID_18, "00D5g000009ZzZzEAK")

    status, reply = await post_salesforce(salesforce_bot, other)

    assert status == 403 and not acked(reply)
    assert "00D5g000009ZzZzEAK" in fault(reply)
    assert await salesforce_bot.rows(DealEventRecord) == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        pytest.param("<notifications>", "not XML", id="not-xml"),
        pytest.param("<a>not soap</a>", "SOAP envelope", id="not-soap"),
        pytest.param(MESSAGE, "Owner_Email__c", id="no-owner-email-field"),
        pytest.param(with_owner_email(MESSAGE).replace("<sf:IsWon>false</sf:IsWon>", ""), "IsWon", id="no-is-won"),
        pytest.param(message_with(), "1 to 100", id="no-notification"),
        # Valid ISO 8601 whose instant in UTC falls outside the years 1 to 9999.
        pytest.param(
            with_owner_email(MESSAGE).replace("2024-06-10T14:51:00.000Z", "0001-01-01T00:00:00+05:00"),
            "LastModifiedDate",
            id="modified-before-year-1-in-utc",
        ),
        pytest.param(
            with_owner_email(MESSAGE).replace("2024-06-10T14:51:00.000Z", "9999-12-31T23:59:59-05:00"),
            "LastModifiedDate",
            id="modified-after-year-9999-in-utc",
        ),
        pytest.param(
            '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>' + MESSAGE.split("?>", 1)[1],
            "document type",
            id="doctype",
        ),
    ],
)
async def test_a_malformed_message_gets_a_400_fault_naming_the_problem_and_nothing_stored(
    salesforce_bot: BotClient, body: str, named: str
) -> None:
    status, reply = await post_salesforce(salesforce_bot, body)

    assert status == 400 and not acked(reply)
    assert named in fault(reply)
    assert await salesforce_bot.rows(DealEventRecord) == []


def in_utf16(message: str, *, doctype: str = "", name: str = "Globex - 250 seats") -> bytes:
    """The message encoded in UTF-16, as its XML declaration says, with `doctype` after the
    declaration and `name` as the Opportunity's name. No `<!DOCTYPE` byte sequence is in it."""
    declaration, rest = message.replace('encoding="UTF-8"', 'encoding="UTF-16"', 1).split("?>", 1)
    return (declaration + "?>" + doctype + rest.replace("Globex - 250 seats", name)).encode("utf-16")


async def test_a_message_in_utf16_is_read_as_its_declaration_says(salesforce_bot: BotClient) -> None:
    status, reply = await post_salesforce(salesforce_bot, in_utf16(with_owner_email(MESSAGE), name="Globex – Zürich"))

    assert status == 200 and acked(reply)
    (deal,) = await salesforce_bot.rows(Deal)
    assert deal.name == "Globex – Zürich"


@pytest.mark.parametrize(
    ("doctype", "name"),
    [
        pytest.param("<!DOCTYPE soapenv:Envelope>", "Globex - 250 seats", id="doctype-alone"),
        pytest.param(
            '<!DOCTYPE soapenv:Envelope [<!ENTITY globex "Globex - 250 seats">]>', "&globex;", id="internal-entity"
        ),
        pytest.param(
            '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>',
            "&c;",
            id="nested-entities",
        ),
        pytest.param('<!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/hostname">]>', "&ext;", id="external-entity"),
        pytest.param('<!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd">', "Globex - 250 seats", id="external-dtd"),
    ],
)
async def test_a_document_type_declaration_in_any_encoding_gets_a_400_fault_and_nothing_stored(
    salesforce_bot: BotClient, doctype: str, name: str
) -> None:
    """Salesforce never sends a DTD; one in UTF-16 hides the bytes `<!DOCTYPE` from a byte search."""
    status, reply = await post_salesforce(
        salesforce_bot, in_utf16(with_owner_email(MESSAGE), doctype=doctype, name=name)
    )

    assert status == 400 and not acked(reply)
    assert "document type" in fault(reply)
    assert await salesforce_bot.rows(DealEventRecord) == []
    assert await salesforce_bot.rows(Deal) == []


async def test_the_route_answers_503_until_salesforce_is_configured(bot: BotClient) -> None:
    status, reply = await post_salesforce(bot, with_owner_email(MESSAGE))

    assert status == 503 and "SALESFORCE_ORG_ID" in fault(reply)
    assert await bot.rows(DealEventRecord) == []


async def test_the_route_answers_503_until_the_webhook_token_is_set(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    settings = make_settings(database_url, fake_slack.url, salesforce_org_id=ORG_ID_18)
    async with serve(settings, fake_slack, session_factory) as bot:
        status, reply = await post_salesforce(bot, with_owner_email(MESSAGE))

        assert status == 503 and not acked(reply)
        assert "SALESFORCE_WEBHOOK_TOKEN" in fault(reply)
        assert await bot.rows(DealEventRecord) == []


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("/webhooks/salesforce", id="no-token"),
        pytest.param("/webhooks/salesforce?token=", id="empty-token"),
        pytest.param("/webhooks/salesforce?token=k3Jd9-QpX2_vR7wLm0Zu", id="wrong-token"),
        pytest.param(f"/webhooks/salesforce?token={WEBHOOK_TOKEN.upper()}", id="other-case"),
        pytest.param(f"/webhooks/salesforce?token={WEBHOOK_TOKEN[:-1]}", id="prefix"),
        pytest.param(f"/webhooks/salesforce?token={WEBHOOK_TOKEN}x", id="longer"),
        pytest.param(f"/webhooks/salesforce?Token={WEBHOOK_TOKEN}", id="other-parameter"),
    ],
)
async def test_a_message_without_the_right_token_gets_a_401_fault_no_ack_and_nothing_stored(
    salesforce_bot: BotClient, url: str
) -> None:
    """The organization id is right: knowing it is not enough to open losses and DM reps."""
    status, reply = await post_salesforce(salesforce_bot, with_owner_email(MESSAGE), url=url)

    assert status == 401 and not acked(reply)
    assert "token" in fault(reply)
    assert await salesforce_bot.rows(DealEventRecord) == []
    assert await salesforce_bot.rows(Deal) == []


async def test_the_token_is_checked_before_the_body_is_read(salesforce_bot: BotClient) -> None:
    status, reply = await post_salesforce(salesforce_bot, "<notifications>", url="/webhooks/salesforce")

    assert status == 401 and "token" in fault(reply)


async def test_the_access_log_leaves_the_token_out(database_url: str, fake_slack: FakeSlack) -> None:
    port = free_port()
    async with bot_process(
        database_url,
        fake_slack.url,
        port,
        stderr=asyncio.subprocess.PIPE,
        SALESFORCE_ORG_ID=ORG_ID_18,
        SALESFORCE_WEBHOOK_TOKEN=WEBHOOK_TOKEN,
    ) as process:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/webhooks/salesforce?token={WEBHOOK_TOKEN}"
            async with http.post(url, data=with_owner_email(MESSAGE).encode(), headers=SOAP_HEADERS) as response:
                assert response.status == 200
        process.terminate()
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()

    assert '"POST /webhooks/salesforce HTTP/1.1" 200' in log
    assert WEBHOOK_TOKEN not in log
