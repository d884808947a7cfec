"""The competitors the team has logged, offered in the reason modal's competitor menu as a rep types."""

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.competitors import competitor_key, detail_key
from bot.reasons import Catalogue, Requirement
from storage import stats_queries
from storage.stats_queries import NamedDetail


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
    """The logged competitors (`logged_competitors`) that match `typed`: its key is part of theirs,
    or its text part of their spelling, ignoring case."""
    async with session_factory() as session, session.begin():
        logged = await logged_competitors(session, catalogue=catalogue, competitor_merges=competitor_merges)
    text = " ".join(typed.split())
    wanted = {competitor_key(text), detail_key(text, competitor_merges)}
    matching = [
        name
        for name in logged
        if any(part and part in name.key for part in wanted) or text.casefold() in name.spelling.casefold()
    ]
    new = text if text and competitor_key(text) and not wanted & {name.key for name in matching} else None
    return CompetitorSuggestions(known=[name.spelling for name in matching], typed=new)


async def logged_competitors(
    session: AsyncSession, *, catalogue: Catalogue, competitor_merges: Mapping[str, str]
) -> list[NamedDetail]:
    """The competitors named on current answers of any reason that asks for one, one per key through
    `competitor_merges` (COMPETITORS_FILE, whose merges then also reach answers stored before it
    named them), each in its most used spelling, most named first."""
    codes = [
        code
        for code in sorted(catalogue.codes)
        if (reason := catalogue.get(code)) is not None and reason.requires == Requirement.COMPETITOR
    ]
    stored = await stats_queries.named_details(session, reason_codes=codes)
    # Most named first already: the first spelling seen under a key is its most used one.
    spellings: dict[str, str] = {}
    times: dict[str, int] = {}
    for name in stored:
        key = competitor_merges.get(name.key, name.key)
        spellings.setdefault(key, name.spelling)
        times[key] = times.get(key, 0) + name.times
    return sorted(
        (NamedDetail(key, spelling, times[key]) for key, spelling in spellings.items()), key=lambda n: -n.times
    )
