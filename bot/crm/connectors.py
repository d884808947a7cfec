"""Which CRMs are connected, read from the settings: the one place that knows every CRM module."""

from functools import partial

import aiohttp

from bot.crm import generic, hubspot, pipedrive, salesforce
from bot.crm.api import Connector
from bot.settings import Settings

SOURCES = (generic.SOURCE, hubspot.SOURCE, salesforce.SOURCE, pipedrive.SOURCE)
"""Every source a deal can come from: the generic webhook and each CRM."""


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


def build_connectors(settings: Settings, http: aiohttp.ClientSession) -> dict[str, Connector]:
    connectors: dict[str, Connector] = {}
    writes = write_back_sources(settings)
    if settings.hubspot_token is not None:
        hubspot_client = hubspot.HubSpotClient(
            http, api_url=settings.hubspot_api_url, token=settings.hubspot_token.get_secret_value()
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
        )
    if settings.pipedrive_api_token is not None:
        pipedrive_client = pipedrive.PipedriveClient(
            http, api_url=settings.pipedrive_api_url, token=settings.pipedrive_api_token.get_secret_value()
        )
        connectors[pipedrive.SOURCE] = Connector(
            fetch=partial(pipedrive.fetch_deal_event, pipedrive_client),
            write_back=partial(pipedrive.write_back, pipedrive_client),
        )
    if salesforce.SOURCE in writes:
        assert settings.salesforce_instance_url is not None and settings.salesforce_client_secret is not None
        assert settings.salesforce_client_id is not None and settings.salesforce_reason_field is not None
        salesforce_client = salesforce.SalesforceClient(
            http,
            instance_url=settings.salesforce_instance_url,
            client_id=settings.salesforce_client_id.get_secret_value(),
            client_secret=settings.salesforce_client_secret.get_secret_value(),
        )
        connectors[salesforce.SOURCE] = Connector(
            fetch=None,
            write_back=partial(
                salesforce.write_back,
                salesforce_client,
                reason_field=settings.salesforce_reason_field,
                explanation_field=settings.salesforce_explanation_field,
            ),
        )
    return connectors
