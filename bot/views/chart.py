"""The digest's chart: each week's losses stacked by reason, with the win rate as a line on its own
axis, as a PNG.

Slack shows an image in a channel at 360 to 500 pixels wide, so the picture is drawn 640 pixels
wide with type of about 18 pixels: at half size it still reads. It counts deals only: amounts in
different currencies cannot be added up, and a count needs no currency.

matplotlib is imported inside `draw_loss_chart`, never at the top of a module: it costs some 40 MiB,
which a bot that never draws a chart should not carry. The figure is drawn by the Agg backend
directly, without pyplot, so that no global figure state is shared between drawings.
"""

import io
import zlib
from dataclasses import dataclass
from datetime import date, timedelta

from bot.reasons import Catalogue, ReasonGroup
from bot.views.data import LossTrend, WeekCounts
from bot.views.text import span, truncate

WIDTH_INCHES = 6.4
PLOT_HEIGHT_INCHES = 3.4
TOP_INCHES = 0.75
"""The two lines of the title."""
AXIS_LABELS_INCHES = 0.8
"""The weeks under the bars (a day, and the month where it changes) and the axis's name."""
LEGEND_ROW_INCHES = 0.3
MARGIN_INCHES = 0.08
LEFT_INCHES = 0.8
RIGHT_INCHES = 0.85
DPI = 100
FONT_SIZE = 14
TITLE_SIZE = 16
MAX_REASONS = 7
"""Real reasons with a colour of their own; the fewest beyond them are grouped as "N more reasons"."""
LABEL_LENGTH = 24
LEGEND_COLUMNS = 2
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
"""matplotlib's tab10 without its grey, which marks what is not a real loss."""
MORE_COLOUR = "#3f3f3f"
NO_DECISION_COLOUR = "#d9d9d9"
WITHOUT_REASON_COLOUR = "#ffffff"
EDGE_COLOUR = "#555555"
WIN_RATE_COLOUR = "#111111"
NO_DECISION_LABEL = "No decision / went dark"
WITHOUT_REASON_LABEL = "No reason yet"


@dataclass(frozen=True)
class Series:
    """One layer of the stacked bars: a label in the legend, a count a week, how it is filled."""

    label: str
    counts: list[int]
    colour: str
    hatch: str = ""


def chart_series(trend: LossTrend, catalogue: Catalogue) -> list[Series]:
    """The stacked layers, bottom first: real losses by reason (the most losses over the weeks first;
    beyond MAX_REASONS, the fewest grouped into one grey layer), then, set apart at the top and in grey,
    no decision / went dark and the losses without a reason yet. A layer without a loss is left out.

    A reason has the same colour every week, and in every digest while the catalogue keeps it: its
    place among the catalogue's active real reasons picks its colour."""
    weeks = trend.weeks
    real: dict[str, list[int]] = {}
    no_decision = [0] * len(weeks)
    for index, week in enumerate(weeks):
        for code, count in week.lost_by_reason.items():
            if _group(catalogue, code) == ReasonGroup.NO_DECISION:
                no_decision[index] += count
            else:
                real.setdefault(code, [0] * len(weeks))[index] += count
    ranked = sorted(real, key=lambda code: (-sum(real[code]), code))
    if len(ranked) > MAX_REASONS:
        shown, grouped = ranked[: MAX_REASONS - 1], ranked[MAX_REASONS - 1 :]
    else:
        shown, grouped = ranked, []
    colours = _colours(shown, catalogue)
    series = [
        Series(truncate(catalogue.label(code), LABEL_LENGTH), real[code], colours[code])
        for code in shown
        if any(real[code])
    ]
    if grouped:
        counts = [sum(real[code][index] for code in grouped) for index in range(len(weeks))]
        series.append(Series(f"{len(grouped)} more reasons", counts, MORE_COLOUR))
    if any(no_decision):
        series.append(Series(NO_DECISION_LABEL, no_decision, NO_DECISION_COLOUR, hatch="///"))
    without = [week.without_reason for week in weeks]
    if any(without):
        series.append(Series(WITHOUT_REASON_LABEL, without, WITHOUT_REASON_COLOUR, hatch=".."))
    return series


def chart_title(trend: LossTrend) -> str:
    """What the chart covers, as its title and the uploaded file's."""
    return f"Deals lost by reason, and win rate: {chart_span(trend)}"


def chart_span(trend: LossTrend) -> str:
    """The weeks the chart covers, Monday of the first to Sunday of the last: "Aug 31 – Nov 22, 2026"."""
    first, last = trend.weeks[0].monday, trend.weeks[-1].monday + timedelta(days=6)
    return f"{len(trend.weeks)} weeks, {span(first, last)}" + (" (so far)" if trend.last_so_far else "")


def chart_alt_text(trend: LossTrend) -> str:
    """The picture in words, for screen readers and for Slack's `alt_txt`."""
    lost = sum(week.lost for week in trend.weeks)
    won = sum(week.won for week in trend.weeks)
    return (
        f"Bar chart of the deals lost each week by reason, with the win rate by count as a line, "
        f"over {chart_span(trend)}: {lost} lost and {won} won in all."
    )


def draw_loss_chart(trend: LossTrend, catalogue: Catalogue) -> bytes:
    """The chart as PNG bytes. Pure: it reads nothing but matplotlib's own fonts and writes nothing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.patheffects import withStroke
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    series = chart_series(trend, catalogue)
    legend_height = -(-(len(series) + 1) // LEGEND_COLUMNS) * LEGEND_ROW_INCHES
    height = TOP_INCHES + PLOT_HEIGHT_INCHES + AXIS_LABELS_INCHES + legend_height + MARGIN_INCHES
    figure = Figure(figsize=(WIDTH_INCHES, height), dpi=DPI)
    FigureCanvasAgg(figure)
    # Margins set here, not by a layout engine, which would draw the whole figure twice to measure it.
    figure.subplots_adjust(
        left=LEFT_INCHES / WIDTH_INCHES,
        right=1 - RIGHT_INCHES / WIDTH_INCHES,
        top=1 - TOP_INCHES / height,
        bottom=(MARGIN_INCHES + legend_height + AXIS_LABELS_INCHES) / height,
    )
    figure.suptitle(f"Deals lost by reason, and win rate\n{chart_span(trend)}", fontsize=TITLE_SIZE)
    bars = figure.add_subplot()
    positions = list(range(len(trend.weeks)))
    bottoms = [0] * len(positions)
    handles = []
    for layer in series:
        bars.bar(
            positions,
            layer.counts,
            bottom=bottoms,
            width=0.72,
            color=layer.colour,
            hatch=layer.hatch,
            edgecolor=EDGE_COLOUR if layer.hatch else "white",
            linewidth=0.6,
        )
        bottoms = [bottom + count for bottom, count in zip(bottoms, layer.counts, strict=True)]
        handles.append(Patch(facecolor=layer.colour, hatch=layer.hatch, edgecolor=EDGE_COLOUR, label=layer.label))
    bars.set_xticks(positions, _week_labels(trend.weeks), fontsize=FONT_SIZE - 1)
    bars.set_xlim(-0.6, len(positions) - 0.4)
    bars.set_xlabel("Week starting (Monday)", fontsize=FONT_SIZE - 1)
    bars.set_ylabel("Deals lost", fontsize=FONT_SIZE)
    bars.set_ylim(0, max(max(bottoms) * 1.1, 1))
    bars.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    bars.tick_params(labelsize=FONT_SIZE - 1)
    bars.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    bars.set_axisbelow(True)
    bars.spines[["top"]].set_visible(False)

    rates = bars.twinx()
    win_rate = [week.win_rate * 100 if week.win_rate is not None else float("nan") for week in trend.weeks]
    rates.plot(
        positions,
        win_rate,
        color=WIN_RATE_COLOUR,
        linewidth=2.4,
        marker="o",
        markersize=6,
        # A white outline keeps the line visible where it crosses a dark bar.
        path_effects=[withStroke(linewidth=5, foreground="white")],
    )
    rates.set_ylim(0, 105)
    rates.set_yticks([0, 25, 50, 75, 100])
    rates.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0f}%"))
    rates.set_ylabel("Win rate", fontsize=FONT_SIZE)
    rates.tick_params(labelsize=FONT_SIZE - 1)
    rates.spines[["top"]].set_visible(False)

    # The legend's own line, without the white outline, which would look dashed there.
    line = Line2D([], [], color=WIN_RATE_COLOUR, linewidth=2.4, marker="o", markersize=6, label="Win rate (by count)")
    figure.legend(
        handles=[line, *handles],
        loc="lower center",
        bbox_to_anchor=(0.5, MARGIN_INCHES / height),
        ncols=LEGEND_COLUMNS,
        frameon=False,
        fontsize=FONT_SIZE - 1,
        handlelength=1.6,
        columnspacing=1.2,
    )
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=DPI, facecolor="white")
    return png.getvalue()


def _week_labels(weeks: list[WeekCounts]) -> list[str]:
    """Each Monday's day of the month, with the month under it where it changes: short enough for
    twelve weeks side by side."""
    labels = []
    previous: date | None = None
    for week in weeks:
        month = previous is None or week.monday.month != previous.month
        labels.append(f"{week.monday.day}\n{week.monday:%b}" if month else str(week.monday.day))
        previous = week.monday
    return labels


def _colours(codes: list[str], catalogue: Catalogue) -> dict[str, str]:
    """A palette colour per code: the one at the code's place among the catalogue's active real
    reasons (a code the catalogue no longer offers: one picked from its name), or the next one free
    when two codes would share it."""
    places = [reason.code for reason in catalogue.active if reason.group == ReasonGroup.LOSS]
    wanted = {code: places.index(code) if code in places else len(places) + zlib.crc32(code.encode()) for code in codes}
    colours: dict[str, str] = {}
    taken: set[int] = set()
    for code in sorted(codes, key=lambda code: (wanted[code], code)):
        index = wanted[code] % len(PALETTE)
        while index in taken and len(taken) < len(PALETTE):
            index = (index + 1) % len(PALETTE)
        taken.add(index)
        colours[code] = PALETTE[index]
    return colours


def _group(catalogue: Catalogue, code: str) -> ReasonGroup:
    reason = catalogue.get(code)
    return reason.group if reason is not None else ReasonGroup.LOSS
