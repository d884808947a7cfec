"""Parsers from each CRM's wire format to the one `DealEvent` the rest of the bot knows."""
