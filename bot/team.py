"""Who manages whom: the TEAM_FILE setting (README.md, "Settings"), a CSV with the header `rep_email,manager_email`."""

import csv
from pathlib import Path

HEADER = ("rep_email", "manager_email")


class TeamFileError(Exception):
    """The team file cannot be used; `str(error)` is one line naming the file, the line and the problem."""


def load_team(path: Path) -> dict[str, str]:
    """Rep email → manager email, both stripped and lower-cased, from the CSV at `path`.

    Blank lines are skipped and a UTF-8 byte order mark (as spreadsheet exports write) is tolerated.
    A rep listed twice with the same manager is fine; with different managers it is an error, since
    either choice would send escalations somewhere the team did not mean.
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            reader = csv.reader(file)
            # `line_num` is the line the row just read ends on: where someone fixing the file will look.
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise TeamFileError(f"{path}: no such file; expected a CSV with the header rep_email,manager_email") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise TeamFileError(f"{path}: cannot be read as a UTF-8 CSV file: {error}") from None

    if not rows:
        raise TeamFileError(f"{path}: the file is empty; expected the header rep_email,manager_email")
    header_line, header = rows[0]
    if tuple(cell.strip().lower() for cell in header) != HEADER:
        found = ",".join(header)
        raise TeamFileError(f"{path}:{header_line}: the header is {found!r}; expected rep_email,manager_email")

    team: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for line, row in rows[1:]:
        if len(row) != len(HEADER):
            raise TeamFileError(f"{path}:{line}: expected 2 columns (rep_email,manager_email), found {len(row)}")
        rep = _email(row[0], "rep_email", path, line)
        manager = _email(row[1], "manager_email", path, line)
        if rep in team and team[rep] != manager:
            raise TeamFileError(
                f"{path}:{line}: {rep} is listed with manager {manager}, "
                f"but line {first_seen[rep]} gives {team[rep]}; a rep has one manager"
            )
        team[rep] = manager
        first_seen.setdefault(rep, line)
    return team


def _email(cell: str, column: str, path: Path, line: int) -> str:
    email = cell.strip().lower()
    if not email:
        raise TeamFileError(f"{path}:{line}: {column} is empty; expected an email address")
    local, _, domain = email.partition("@")
    if email.count("@") != 1 or not local or not domain or any(character.isspace() for character in email):
        raise TeamFileError(f"{path}:{line}: {column} {cell.strip()!r} is not an email address")
    return email
