"""Unit tests of the reason catalogue: the built-in list and a team's own TOML file (README.md, "The
reason catalogue")."""

from pathlib import Path

import pytest

from bot.reasons import CatalogueError, ReasonGroup, Requirement, load_catalogue

DEFAULT_CODES = [
    "price",
    "competitor",
    "timing",
    "no_decision",
    "missing_feature",
    "no_need",
    "poor_fit",
    "no_champion",
    "stale",
    "terms",
    "other",
]

TEAM_FILE = """\
[[reason]]
code = "price"
label = "Price / budget"
revisit_after_days = 180

[[reason]]
code = "competitor"
label = "Lost to a competitor"
requires = "competitor"

[[reason]]
code = "ghosted"
label = "Went dark 👻"
group = "no_decision"

[[reason]]
code = "gap"
label = "Product gap"
requires = "feature"
revisit_after_days = 365

[[reason]]
code = "old_budget"
label = "Budget cut (old)"
retired = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reasons.toml"
    path.write_text(text, encoding="utf-8")
    return path


def entry(**fields: object) -> str:
    """One [[reason]] table, values written as TOML."""
    lines = ["[[reason]]"]
    for key, value in fields.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


# --- the built-in list ----------------------------------------------------------------------------


def test_without_a_file_the_default_ten_reasons_are_active_in_order() -> None:
    catalogue = load_catalogue(None)

    assert [reason.code for reason in catalogue.active] == DEFAULT_CODES
    assert catalogue.codes == set(DEFAULT_CODES)


def test_the_default_rules_match_the_design() -> None:
    catalogue = load_catalogue(None)

    competitor = catalogue.get("competitor")
    feature = catalogue.get("missing_feature")
    no_decision = catalogue.get("no_decision")
    assert competitor is not None and competitor.requires is Requirement.COMPETITOR
    assert feature is not None and feature.requires is Requirement.FEATURE
    assert no_decision is not None and no_decision.group is ReasonGroup.NO_DECISION
    required = {reason.code for reason in catalogue.active if reason.requires is not None}
    assert required == {"competitor", "missing_feature"}
    assert {reason.code for reason in catalogue.active if reason.group is ReasonGroup.NO_DECISION} == {
        "no_decision",
        "stale",
    }


def test_every_default_label_fits_a_select_option() -> None:
    for reason in load_catalogue(None).active:
        assert 0 < len(reason.label) <= 75


# --- a team's file --------------------------------------------------------------------------------


def test_a_team_file_replaces_the_list(tmp_path: Path) -> None:
    catalogue = load_catalogue(write(tmp_path, TEAM_FILE))

    assert [reason.code for reason in catalogue.active] == ["price", "competitor", "ghosted", "gap"]
    ghosted = catalogue.get("ghosted")
    gap = catalogue.get("gap")
    assert ghosted is not None and ghosted.group is ReasonGroup.NO_DECISION and ghosted.label == "Went dark 👻"
    assert gap is not None and gap.requires is Requirement.FEATURE and gap.revisit_after_days == 365
    assert catalogue.get("timing") is None


def test_cues_are_read_trimmed_and_a_reason_without_cues_has_none(tmp_path: Path) -> None:
    text = TEAM_FILE + entry(code="freeze", label="Spending freeze", cues=["  procurement   freeze ", "hiring freeze"])

    catalogue = load_catalogue(write(tmp_path, text))

    freeze = catalogue.get("freeze")
    price = catalogue.get("price")
    assert freeze is not None and freeze.cues == ("procurement freeze", "hiring freeze")
    assert price is not None and price.cues == ()


def test_a_cue_under_two_reasons_is_refused_naming_both(tmp_path: Path) -> None:
    text = entry(code="freeze", label="Freeze", cues=["Hiring freeze"]) + entry(
        code="timing", label="Timing", cues=["hiring  FREEZE"]
    )

    with pytest.raises(CatalogueError, match="the cue 'hiring FREEZE' is listed under both 'freeze' and 'timing'"):
        load_catalogue(write(tmp_path, text))


def test_a_retired_code_is_hidden_from_the_picker_but_still_known(tmp_path: Path) -> None:
    catalogue = load_catalogue(write(tmp_path, TEAM_FILE))

    retired = catalogue.get("old_budget")
    assert retired is not None and retired.retired
    assert "old_budget" not in [reason.code for reason in catalogue.active]
    assert "old_budget" in catalogue.codes
    assert catalogue.label("old_budget") == "Budget cut (old)"


def test_the_label_of_a_code_the_catalogue_no_longer_knows_is_the_code(tmp_path: Path) -> None:
    assert load_catalogue(write(tmp_path, TEAM_FILE)).label("timing") == "timing"


def test_labels_are_trimmed(tmp_path: Path) -> None:
    catalogue = load_catalogue(write(tmp_path, entry(code="price", label="  Price  ")))

    reason = catalogue.get("price")
    assert reason is not None and reason.label == "Price"


# --- bad files ------------------------------------------------------------------------------------


def test_an_unreadable_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"

    with pytest.raises(CatalogueError, match="cannot read") as caught:
        load_catalogue(missing)

    assert str(missing) in str(caught.value)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path)


def test_invalid_toml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="not valid TOML"):
        load_catalogue(write(tmp_path, '[[reason]]\ncode = "price\n'))


def test_a_file_not_in_utf8_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    # A file saved as Latin-1 by an old editor: "Prix élevé".
    path = tmp_path / "reasons.toml"
    path.write_bytes('[[reason]]\ncode = "price"\nlabel = "Prix élevé"\n'.encode("latin-1"))

    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)

    assert str(path) in str(caught.value)


@pytest.mark.parametrize("text", ["", "# nothing yet\n", 'reason = "price"\n', "reason = []\n", "[reasons]\n"])
def test_a_file_without_reason_entries_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(CatalogueError, match=r"no \[\[reason\]\] entries"):
        load_catalogue(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (entry(code="Price", label="Price"), "code must be lower-case"),
        (entry(code="price-budget", label="Price"), "code must be lower-case"),
        (entry(code="9lives", label="Price"), "code must be lower-case"),
        (entry(code=7, label="Price"), "code must be lower-case"),
        (entry(label="Price"), "code must be lower-case"),
        (entry(code="price"), "label must be text"),
        (entry(code="price", label="   "), "label must be text"),
        (entry(code="price", label="x" * 76), "label must be text"),
        (entry(code="price", label="Price", colour="red"), "unknown keys: colour"),
        (entry(code="price", label="Price", requires="budget"), "requires must be competitor or feature"),
        (entry(code="price", label="Price", group="win"), "group must be loss or no_decision"),
        (entry(code="price", label="Price", revisit_after_days=0), "revisit_after_days"),
        (entry(code="price", label="Price", revisit_after_days=-30), "revisit_after_days"),
        (entry(code="price", label="Price", revisit_after_days=3651), "revisit_after_days"),
        (entry(code="price", label="Price", revisit_after_days="90"), "revisit_after_days"),
        (entry(code="price", label="Price", revisit_after_days=1.5), "revisit_after_days"),
        (entry(code="price", label="Price", revisit_after_days=True), "revisit_after_days"),
        (entry(code="price", label="Price", retired="yes"), "retired must be true or false"),
        (entry(code="price", label="Price", cues="procurement freeze"), "cues must be a list"),
        (entry(code="price", label="Price", cues=["freeze", 7]), "cues must be a list"),
        (entry(code="price", label="Price", cues=["   "]), "cues must be a list"),
        (entry(code="price", label="Price", cues=["!!!"]), "cues must be a list"),
        (entry(code="price", label="Price", cues=["x" * 101]), "at most 100 characters"),
    ],
)
def test_a_bad_entry_is_refused_with_a_clear_message(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(CatalogueError, match=words):
        load_catalogue(write(tmp_path, entry(code="timing", label="Bad timing") + text))


def test_the_message_names_the_bad_entry(tmp_path: Path) -> None:
    text = entry(code="timing", label="Bad timing") + entry(code="price", label="Price", requires="budget")

    with pytest.raises(CatalogueError, match="'price'"):
        load_catalogue(write(tmp_path, text))


def test_the_message_names_the_position_of_an_entry_without_a_code(tmp_path: Path) -> None:
    text = entry(code="timing", label="Bad timing") + entry(label="Price")

    with pytest.raises(CatalogueError, match="#2"):
        load_catalogue(write(tmp_path, text))


def test_a_duplicate_code_is_refused(tmp_path: Path) -> None:
    text = entry(code="price", label="Price") + entry(code="timing", label="Timing") + entry(code="price", label="Cost")

    with pytest.raises(CatalogueError, match="more than once: price"):
        load_catalogue(write(tmp_path, text))


def test_a_file_whose_reasons_are_all_retired_is_refused(tmp_path: Path) -> None:
    text = entry(code="price", label="Price", retired=True) + entry(code="timing", label="Timing", retired=True)

    with pytest.raises(CatalogueError, match="every reason is retired"):
        load_catalogue(write(tmp_path, text))


def test_more_than_a_hundred_active_reasons_are_refused(tmp_path: Path) -> None:
    text = "".join(entry(code=f"reason_{n}", label=f"Reason {n}") for n in range(101))

    with pytest.raises(CatalogueError, match="at most 100"):
        load_catalogue(write(tmp_path, text))


def test_a_hundred_active_reasons_and_retired_ones_are_accepted(tmp_path: Path) -> None:
    active = "".join(entry(code=f"reason_{n}", label=f"Reason {n}") for n in range(100))
    retired = entry(code="old", label="Old", retired=True)

    catalogue = load_catalogue(write(tmp_path, active + retired))

    assert len(catalogue.active) == 100
    assert catalogue.get("old") is not None
