from pathlib import Path

import pytest

from bot.team import TeamFileError, load_team


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "team.csv"
    path.write_bytes(text.encode(encoding))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(TeamFileError) as error:
        load_team(path)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_load_team_maps_reps_to_managers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rep_email,manager_email\n"
        "ada@example.com,grace@example.com\n"
        " Alan@Example.COM , Grace@example.com \n"
        "grace@example.com,ceo@example.com\n",
    )
    assert load_team(path) == {
        "ada@example.com": "grace@example.com",
        "alan@example.com": "grace@example.com",
        "grace@example.com": "ceo@example.com",
    }


def test_blank_lines_crlf_and_a_bom_are_tolerated(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\ufeffrep_email,manager_email\r\n\r\nada@example.com,grace@example.com\r\n   \r\n,\r\n",
    )
    assert load_team(path) == {"ada@example.com": "grace@example.com"}


def test_a_header_alone_is_an_empty_team(tmp_path: Path) -> None:
    assert load_team(write(tmp_path, "rep_email,manager_email\n")) == {}


def test_quoted_cells_are_read_as_csv(tmp_path: Path) -> None:
    path = write(tmp_path, '"rep_email","manager_email"\n"ada@example.com","grace@example.com"\n')
    assert load_team(path) == {"ada@example.com": "grace@example.com"}


def test_a_rep_listed_twice_with_the_same_manager_is_fine(tmp_path: Path) -> None:
    path = write(
        tmp_path, "rep_email,manager_email\nada@example.com,grace@example.com\nADA@example.com,grace@example.com\n"
    )
    assert load_team(path) == {"ada@example.com": "grace@example.com"}


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    assert load_error(path) == f"{path}: no such file; expected a CSV with the header rep_email,manager_email"


def test_a_directory_is_not_a_team_file(tmp_path: Path) -> None:
    assert load_error(tmp_path).startswith(f"{tmp_path}: cannot be read as a UTF-8 CSV file: ")


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "rep_email,manager_email\nzoë@example.com,grace@example.com\n", encoding="utf-16")
    assert load_error(path).startswith(f"{path}: cannot be read as a UTF-8 CSV file: ")


def test_an_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "\n\n")
    assert load_error(path) == f"{path}: the file is empty; expected the header rep_email,manager_email"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("rep,manager\nada@example.com,grace@example.com\n", "'rep,manager'"),
        ("manager_email,rep_email\n", "'manager_email,rep_email'"),
        ("rep_email,manager_email,team\n", "'rep_email,manager_email,team'"),
        ("ada@example.com,grace@example.com\n", "'ada@example.com,grace@example.com'"),
    ],
)
def test_a_wrong_header(tmp_path: Path, text: str, found: str) -> None:
    path = write(tmp_path, text)
    assert load_error(path) == f"{path}:1: the header is {found}; expected rep_email,manager_email"


def test_the_header_line_number_counts_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "\n\nrep,manager\n")
    assert load_error(path).startswith(f"{path}:3: the header is 'rep,manager'")


@pytest.mark.parametrize(
    ("row", "count"),
    [("ada@example.com", 1), ("ada@example.com,grace@example.com,extra", 3), ("ada@example.com,grace@example.com,", 3)],
)
def test_a_row_with_the_wrong_number_of_columns(tmp_path: Path, row: str, count: int) -> None:
    path = write(tmp_path, f"rep_email,manager_email\nalan@example.com,grace@example.com\n\n{row}\n")
    assert load_error(path) == f"{path}:4: expected 2 columns (rep_email,manager_email), found {count}"


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (",grace@example.com", "rep_email is empty; expected an email address"),
        ("ada@example.com,  ", "manager_email is empty; expected an email address"),
        ("ada,grace@example.com", "rep_email 'ada' is not an email address"),
        ("ada@example.com,grace", "manager_email 'grace' is not an email address"),
        ("@example.com,grace@example.com", "rep_email '@example.com' is not an email address"),
        ("ada@,grace@example.com", "rep_email 'ada@' is not an email address"),
        ("ada@example.com,grace@@example.com", "manager_email 'grace@@example.com' is not an email address"),
        ("ada lovelace@example.com,grace@example.com", "rep_email 'ada lovelace@example.com' is not an email address"),
    ],
)
def test_an_empty_or_malformed_email(tmp_path: Path, row: str, problem: str) -> None:
    path = write(tmp_path, f"rep_email,manager_email\n{row}\n")
    assert load_error(path) == f"{path}:2: {problem}"


def test_a_rep_listed_twice_with_different_managers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rep_email,manager_email\n"
        "ada@example.com,grace@example.com\n"
        "alan@example.com,grace@example.com\n"
        "Ada@example.com,linus@example.com\n",
    )
    assert load_error(path) == (
        f"{path}:4: ada@example.com is listed with manager linus@example.com, "
        "but line 2 gives grace@example.com; a rep has one manager"
    )


def test_line_numbers_follow_quoted_cells_over_several_lines(tmp_path: Path) -> None:
    path = write(tmp_path, 'rep_email,manager_email\n"ada@example.com\n",grace@example.com\nalan,grace@example.com\n')
    assert load_error(path) == f"{path}:4: rep_email 'alan' is not an email address"
