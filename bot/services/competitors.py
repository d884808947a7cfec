"""The competitors the team has logged, offered in the reason modal's competitor menu as a rep types."""

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.competitors import competitor_key, detail_key
from bot.reasons import Catalogue, Requirement
from storage import stats_queries


@dataclass(frozen=True)
class CompetitorSuggestions:
    known: list[str]
    """The logged competitors whose name matches what was typed, each in its most used spelling,
    most named first."""
    typed: str | None
    """What was typed, to offer as a new competitor; None when it is one of `known` (same key) or
    has no letter or digit."""


async def suggest_competitors(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    typed: str,
    catalogue: Catalogue,
    competitor_merges: Mapping[str, str],
) -> CompetitorSuggestions:
    """The competitors named on current answers of any reason that asks for one, grouped by key
    through `competitor_merges` (COMPETITORS_FILE, whose merges then also reach answers stored
    before it named them), that match `typed`: its key is part of theirs, or its text part of
    their spelling, ignoring case."""
    codes = [
        code
        for code in sorted(catalogue.codes)
        if (reason := catalogue.get(code)) is not None and reason.requires == Requirement.COMPETITOR
    ]
    async with session_factory() as session, session.begin():
        stored = await stats_queries.named_details(session, reason_codes=codes)
    # Most named first already: the first spelling seen under a key is its most used one.
    spellings: dict[str, str] = {}
    times: dict[str, int] = {}
    for name in stored:
        key = competitor_merges.get(name.key, name.key)
        spellings.setdefault(key, name.spelling)
        times[key] = times.get(key, 0) + name.times
    text = " ".join(typed.split())
    wanted = {competitor_key(text), detail_key(text, competitor_merges)}
    matching = [
        key
        for key, spelling in spellings.items()
        if any(part and part in key for part in wanted) or text.casefold() in spelling.casefold()
    ]
    matching.sort(key=lambda key: -times[key])
    new = text if text and competitor_key(text) and not wanted & set(matching) else None
    return CompetitorSuggestions(known=[spellings[key] for key in matching], typed=new)
