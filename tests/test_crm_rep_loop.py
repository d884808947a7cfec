"""A CRM's deal through the whole loop over real HTTP: HubSpot webhook → deal fetched → DM → the
modal opens on the reason the CRM already has (REASON_ALIASES) → the rep confirms and explains →
the reason is written back to HubSpot, and again after an edit. And the alias mapping itself."""

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.reasons import DEFAULT_REASONS, Catalogue, Reason, code_for_crm_reason
from bot.settings import Settings
from storage.models import CrmJob, ReasonEntry
from tests.bot_client import BotClient, button, deal, eventually
from tests.conftest import make_settings, serve
from tests.fake_crm import FakeCrm
from tests.fake_slack import FakeSlack
from tests.test_hubspot import SECRET, sign_hubspot, stage_change

EXPLANATION = "Initech undercut us by 30% and bundled onboarding for free."
CATALOGUE = Catalogue(DEFAULT_REASONS)


def hubspot_settings(database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, **overrides: Any) -> Settings:
    """A bot connected to the fake HubSpot, whose deal's own loss reason names a cheaper competitor."""
    fake_crm.hubspot_deals["18472639201"] = {
        "dealname": "Globex - 250 seats",
        "hubspot_owner_id": "61829374",
        "closed_lost_reason": "Went with a cheaper competitor (Initech)",
    }
    fake_crm.hubspot_owners["61829374"] = "dana@example.com"
    return make_settings(
        database_url,
        fake_slack.url,
        public_url="https://bot.example.com",
        hubspot_client_secret=SECRET,
        hubspot_token="pat-token",
        hubspot_api_url=fake_crm.url,
        hubspot_explanation_property="closed_lost_explanation",
        **overrides,
    )


@pytest.fixture
async def bot_with_hubspot(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> AsyncIterator[BotClient]:
    settings = hubspot_settings(
        database_url, fake_slack, fake_crm, reason_aliases={"went with a cheaper competitor (initech)": "competitor"}
    )
    async with serve(settings, fake_slack, session_factory) as client:
        yield client


async def lose_the_hubspot_deal(bot: BotClient) -> tuple[str, tuple[str, str]]:
    """HubSpot's webhook says the deal moved to closed-lost; returns the loss id and its DM's (channel, ts)."""
    body = json.dumps([stage_change(stage="closedlost", occurred_at_ms=int(time.time() * 1000) - 1000)]).encode()
    headers = sign_hubspot(
        method="POST", uri="https://bot.example.com/webhooks/hubspot", body=body, timestamp_ms=int(time.time() * 1000)
    )
    async with bot.http.post("/webhooks/hubspot", data=body, headers=headers) as response:
        assert response.status == 200
    prompt, where = await bot.prompt()
    return button(prompt, "log_reason")["value"], where


def input_block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(block for block in view["blocks"] if block.get("block_id") == block_id)


async def test_the_crms_reason_pre_fills_the_modal_and_the_logged_reason_is_written_back(
    bot_with_hubspot: BotClient, fake_crm: FakeCrm
) -> None:
    bot = bot_with_hubspot
    loss_id, where = await lose_the_hubspot_deal(bot)
    view = await bot.open_modal(user_id="U0DANA001", value=loss_id, message=where)

    # The rep sees what the CRM says, and the mapped reason is picked, with its competitor field.
    assert "In the CRM: _Went with a cheaper competitor (Initech)_" in json.dumps(view["blocks"][0])
    assert input_block(view, "reason")["element"]["initial_option"]["value"] == "competitor"
    assert "competitor" in [block.get("block_id") for block in view["blocks"]]
    assert "initial_value" not in input_block(view, "explanation")["element"]  # the rep still explains

    values = {"reason_select": "competitor", "detail_input": "Initech", "explanation_input": EXPLANATION}
    accepted = await bot.submit(user_id="U0DANA001", view=view, values=values)
    assert accepted.status == 200

    (written,) = await eventually(lambda: fake_crm.calls_to("hubspot.update_deal"), what="the write-back")
    assert written.path == "/crm/v3/objects/deals/18472639201"
    assert written.body == {
        "properties": {"closed_lost_reason": "Lost to a competitor: Initech", "closed_lost_explanation": EXPLANATION}
    }

    edit = await bot.open_modal(user_id="U0DANA001", value=loss_id, message=where, action_id="edit_reason")
    values = {"reason_select": "price", "explanation_input": EXPLANATION}
    # Initech is now a competitor the team has logged: the modal asks once, and the rep keeps price.
    asked = await bot.submit(user_id="U0DANA001", view=edit, values=values)
    assert asked.body["response_action"] == "update"
    kept = {**asked.body["view"], "id": edit["id"], "hash": edit["hash"]}
    assert (await bot.submit(user_id="U0DANA001", view=kept, values=values)).body == ""

    def two_writes() -> bool:
        return len(fake_crm.calls_to("hubspot.update_deal")) == 2

    await eventually(two_writes, what="the edit's write-back")
    assert fake_crm.calls_to("hubspot.update_deal")[-1].body["properties"]["closed_lost_reason"] == "Price / budget"
    assert [(entry.reason_code, entry.confirmed_over) for entry in await bot.rows(ReasonEntry)] == [
        ("competitor", None),
        ("price", "competitor"),
    ]


async def test_without_an_alias_the_words_of_the_crms_reason_pick_the_reason_and_its_competitor(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """ "Went with a cheaper competitor (Initech)", which REASON_ALIASES does not map, opens the modal
    on Lost to a competitor with Initech in its field, as the second look reads the words."""
    async with serve(hubspot_settings(database_url, fake_slack, fake_crm), fake_slack, session_factory) as bot:
        loss_id, where = await lose_the_hubspot_deal(bot)

        view = await bot.open_modal(user_id="U0DANA001", value=loss_id, message=where)

        assert input_block(view, "reason")["element"]["initial_option"]["value"] == "competitor"
        assert input_block(view, "competitor")["element"]["initial_option"]["value"] == "Initech"
        values = {"reason_select": "competitor", "detail_input": "Initech", "explanation_input": EXPLANATION}
        assert (await bot.submit(user_id="U0DANA001", view=view, values=values)).body == ""
        (entry,) = await bot.rows(ReasonEntry)
        assert (entry.reason_code, entry.detail, entry.confirmed_over) == ("competitor", "Initech", None)


async def test_a_deal_from_the_generic_webhook_is_not_written_anywhere(bot: BotClient) -> None:
    """Write-back is per CRM and off unless configured: the default bot has no CRM job after a reason."""
    await bot.post_deals(deal())
    prompt, where = await bot.prompt()
    view = await bot.open_modal(user_id="U0DANA001", value=button(prompt, "log_reason")["value"], message=where)
    values = {"reason_select": "timing", "explanation_input": EXPLANATION}

    assert (await bot.submit(user_id="U0DANA001", view=view, values=values)).status == 200
    assert len(await bot.rows(ReasonEntry)) == 1
    assert await bot.rows(CrmJob) == []


@pytest.mark.parametrize(
    ("crm_reason", "code"),
    [
        pytest.param("Went with a cheaper competitor (Initech)", "competitor", id="alias"),
        pytest.param("  WENT with a cheaper   competitor (initech) ", "competitor", id="alias-case-and-spaces"),
        pytest.param("Price / budget", "price", id="a-label"),
        pytest.param("no_champion", "no_champion", id="a-code"),
        pytest.param("They just stopped answering", None, id="unknown"),
        pytest.param("Legal said no", None, id="alias-to-a-retired-code"),
        pytest.param(None, None, id="none"),
    ],
)
def test_a_crm_reason_maps_to_an_active_catalogue_code(crm_reason: str | None, code: str | None) -> None:
    catalogue = Catalogue([*DEFAULT_REASONS[:-2], Reason("terms", "Contract or legal terms", retired=True)])
    aliases = {"Went with a cheaper competitor (Initech)": "competitor", "Legal said no": "terms"}

    assert code_for_crm_reason(crm_reason, aliases=aliases, catalogue=catalogue) == code
