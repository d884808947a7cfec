"""One name per competitor: the key its spellings share, and the COMPETITORS_FILE merges."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.competitors import COMPANY_SUFFIXES, CompetitorsFileError, competitor_key, detail_key, load_competitors

NAMES = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
SUFFIXES = st.sampled_from(["Inc", "Inc.", "LLC", "Ltd", "GmbH", "S.A.", "AG", "B.V.", "Corp", "Co.", "PLC", "Pty"])


@pytest.mark.parametrize(
    "spelling",
    ["Initech", "initech inc.", "INITECH, Inc", "  Initech  ", "Ini-tech", "Initech LLC", "Initech Pty Ltd"],
)
def test_spellings_of_one_name_share_its_key(spelling: str) -> None:
    assert competitor_key(spelling) == "initech"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Acme GmbH & Co. KG", "acme"),
        ("Maersk A/S", "maersk"),
        ("Société Générale", "societegenerale"),
        ("SOCIETE GENERALE SA", "societegenerale"),
        ("Sales Force", "salesforce"),
        ("AT&T", "att"),
        ("Straße AG", "strasse"),
        ("ＡＣＭＥ", "acme"),
        ("华为", "华为"),
    ],
)
def test_case_accents_width_punctuation_and_suffixes_are_ignored(name: str, key: str) -> None:
    assert competitor_key(name) == key


def test_a_suffix_alone_is_the_name_and_different_names_keep_different_keys() -> None:
    assert competitor_key("Co") == "co"
    assert competitor_key("Inc.") == "inc"
    assert competitor_key("Globex") != competitor_key("Initech")
    assert competitor_key("Co-op Bank") == "coopbank"


def test_a_name_without_letters_or_digits_has_an_empty_key() -> None:
    assert competitor_key(" -- !? ") == ""


@given(NAMES)
def test_the_key_of_a_key_is_itself(name: str) -> None:
    key = competitor_key(name)
    assert competitor_key(key) == key


@given(NAMES, st.lists(SUFFIXES, max_size=3))
def test_trailing_suffixes_in_any_order_and_number_are_ignored(name: str, suffixes: list[str]) -> None:
    key = competitor_key(name)
    words = name.split()
    # Only names with a word of their own that is no suffix keep it before the suffixes.
    if not key or (words and competitor_key(words[-1]) in COMPANY_SUFFIXES):
        return
    assert competitor_key(" ".join([name, *suffixes])) == key
    assert competitor_key(", ".join([name, *reversed(suffixes)])) == key


@given(NAMES)
def test_case_and_spacing_never_change_the_key(name: str) -> None:
    key = competitor_key(name)
    assert competitor_key(name.upper().lower()) == competitor_key(name.lower())
    assert competitor_key(f"  {name}\t") == key
    assert competitor_key(name).isalnum() or key == ""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "competitors.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_file_gives_each_alias_its_names_key(tmp_path: Path) -> None:
    merges = load_competitors(
        write(
            tmp_path,
            '"IBM" = ["Big Blue", "International Business Machines Corp."]\n'
            '"Initech" = ["Initrode", "initech inc"]\n'
            '"Globex" = []\n',
        )
    )

    assert merges == {"bigblue": "ibm", "internationalbusinessmachines": "ibm", "initrode": "initech"}
    assert detail_key("big blue, inc.", merges) == "ibm"
    assert detail_key("IBM", merges) == "ibm"
    assert detail_key("Hooli", merges) == "hooli"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('"IBM" = "Big Blue"', '"IBM" must be a list of names'),
        ('"IBM" = ["Big Blue", 3]', '"IBM" must be a list of names'),
        ('"IBM" = ["Big Blue"]\n"Hooli" = ["big blue inc"]', '"big blue inc" is listed under both "IBM" and "Hooli"'),
        ('"IBM" = ["Hooli"]\n"Hooli" = []', '"Hooli" is listed under "IBM" but is a name of its own'),
        ('"IBM" = ["--"]', '"--" has no letter or digit'),
        ('"?!" = ["IBM"]', '"?!" has no letter or digit'),
        ("IBM = [Big Blue]", "cannot be read as a TOML file"),
    ],
)
def test_a_bad_file_is_refused_in_one_line_naming_it(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)

    with pytest.raises(CompetitorsFileError) as raised:
        load_competitors(path)

    message = str(raised.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CompetitorsFileError, match="no such file"):
        load_competitors(tmp_path / "nowhere.toml")
