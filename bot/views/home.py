"""The App Home tab: the rep's deals awaiting a reason (with Log reason buttons), upcoming
revisits, and the rep's numbers; for ADMIN_USERS, the admin view below them. At most 100 blocks:
https://docs.slack.dev/reference/block-kit/blocks"""

from slack_sdk.models.blocks import Block, DividerBlock, HeaderBlock, SectionBlock
from slack_sdk.models.views import View

from bot.reasons import Catalogue
from bot.views.admin import admin_blocks
from bot.views.data import Home
from bot.views.figures import awaiting_blocks, revisit_blocks, stats_blocks


def build_home_view(home: Home, catalogue: Catalogue) -> View:
    blocks: list[Block] = [
        HeaderBlock(text="Your closed-lost deals"),
        *awaiting_blocks(home.awaiting, home.awaiting_total),
        DividerBlock(),
        *revisit_blocks(home.revisits, home.revisits_total, catalogue),
        DividerBlock(),
        SectionBlock(text=f"*Your numbers, {home.period.label}*"),
        *stats_blocks(home.stats, catalogue),
    ]
    if home.admin is not None:
        blocks += [DividerBlock(), HeaderBlock(text="closedlost admin"), *admin_blocks(home.admin)]
    return View(type="home", blocks=blocks)
