"""Which CRMs are connected, read from the settings: the one place that knows every CRM module."""

from collections.abc import AsyncIterator
from datetime import datetime
from functools import partial

import aiohttp

from bot.crm import generic, hubspot, pipedrive, salesforce
from bot.crm.api import Connector, DealPage
from bot.settings import Settings

SOURCES = (generic.SOURCE, hubspot.SOURCE, salesforce.SOURCE, pipedrive.SOURCE)
"""Every source a deal can come from: the generic webhook and each CRM."""
CRM_NAMES = {hubspot.SOURCE: "HubSpot", salesforce.SOURCE: "Salesforce", pipedrive.SOURCE: "Pipedrive"}
"""Each CRM's name as people write it, by its `source`."""


def crm_name(source: str) -> str:
    return CRM_NAMES.get(source, source)


def write_back_sources(settings: Settings) -> frozenset[str]:
    """The CRMs a logged reason is written back to (README.md, "Writing reasons back to the CRM")."""
    sources = set()
    if settings.hubspot_token is not None and settings.hubspot_reason_property:
        sources.add(hubspot.SOURCE)
    if settings.pipedrive_api_token is not None:
        sources.add(pipedrive.SOURCE)
    if settings.salesforce_client_id is not None and settings.salesforce_reason_field:
        sources.add(salesforce.SOURCE)
    return frozenset(sources)


def webhook_sources(settings: Settings) -> frozenset[str]:
    """The CRMs whose webhook route is configured: a change the sweep finds first, their webhook missed."""
    sources = set()
    if settings.hubspot_client_secret is not None:
        sources.add(hubspot.SOURCE)
    if settings.pipedrive_webhook_user is not None:
        sources.add(pipedrive.SOURCE)
    if settings.salesforce_org_id is not None and settings.salesforce_webhook_token is not None:
        sources.add(salesforce.SOURCE)
    return frozenset(sources)


def build_connectors(settings: Settings, http: aiohttp.ClientSession) -> dict[str, Connector]:
    """A connector for each CRM whose API credentials are set."""
    connectors: dict[str, Connector] = {}
    writes = write_back_sources(settings)
    if settings.hubspot_token is not None:
        hubspot_client = hubspot.HubSpotClient(
            http,
            api_url=settings.hubspot_api_url,
            token=settings.hubspot_token.get_secret_value(),
            searches_per_second=settings.hubspot_searches_per_second,
        )

        def list_hubspot(since: datetime) -> AsyncIterator[DealPage]:
            return hubspot.list_deal_changes(
                hubspot_client, since=since, reason_property=settings.hubspot_reason_property
            )

        def list_closed_hubspot(since: datetime) -> AsyncIterator[DealPage]:
            return hubspot.list_closed_deals(
                hubspot_client, since=since, reason_property=settings.hubspot_reason_property
            )

        connectors[hubspot.SOURCE] = Connector(
            fetch=partial(hubspot.fetch_deal_event, hubspot_client, reason_property=settings.hubspot_reason_property),
            write_back=partial(
                hubspot.write_back,
                hubspot_client,
                reason_property=settings.hubspot_reason_property,
                explanation_property=settings.hubspot_explanation_property,
            )
            if hubspot.SOURCE in writes
            else None,
            list_changes=list_hubspot,
            list_closed=list_closed_hubspot,
        )
    if settings.pipedrive_api_token is not None:
        pipedrive_client = pipedrive.PipedriveClient(
            http, api_url=settings.pipedrive_api_url, token=settings.pipedrive_api_token.get_secret_value()
        )

        def list_pipedrive(since: datetime) -> AsyncIterator[DealPage]:
            return pipedrive.list_deal_changes(pipedrive_client, since=since)

        def list_closed_pipedrive(since: datetime) -> AsyncIterator[DealPage]:
            return pipedrive.list_closed_deals(pipedrive_client, since=since)

        connectors[pipedrive.SOURCE] = Connector(
            fetch=partial(pipedrive.fetch_deal_event, pipedrive_client),
            write_back=partial(pipedrive.write_back, pipedrive_client),
            list_changes=list_pipedrive,
            list_closed=list_closed_pipedrive,
        )
    if settings.salesforce_instance_url is not None:
        # The settings make SALESFORCE_INSTANCE_URL, _CLIENT_ID and _CLIENT_SECRET come together.
        assert settings.salesforce_client_id is not None and settings.salesforce_client_secret is not None
        salesforce_client = salesforce.SalesforceClient(
            http,
            instance_url=settings.salesforce_instance_url,
            client_id=settings.salesforce_client_id.get_secret_value(),
            client_secret=settings.salesforce_client_secret.get_secret_value(),
        )
        reason_field = settings.salesforce_reason_field

        def list_salesforce(since: datetime) -> AsyncIterator[DealPage]:
            return salesforce.list_deal_changes(salesforce_client, since=since, reason_field=reason_field)

        def list_closed_salesforce(since: datetime) -> AsyncIterator[DealPage]:
            return salesforce.list_closed_deals(salesforce_client, since=since, reason_field=reason_field)

        connectors[salesforce.SOURCE] = Connector(
            fetch=None,
            write_back=partial(
                salesforce.write_back,
                salesforce_client,
                reason_field=reason_field,
                explanation_field=settings.salesforce_explanation_field,
            )
            if salesforce.SOURCE in writes and reason_field is not None
            else None,
            list_changes=list_salesforce,
            list_closed=list_closed_salesforce,
        )
    return connectors
