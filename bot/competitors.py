"""One name per competitor: the key that groups the spellings reps type, and the COMPETITORS_FILE
setting (README.md, "Competitor names") that merges names no rule can.

"Initech", "initech inc." and "INITECH, Inc" share the key `initech`: case, accents, spaces,
punctuation and a trailing company suffix are ignored. A file such as

    "IBM" = ["Big Blue", "International Business Machines"]

gives each alias the key of the name it belongs to, so that "Big Blue" counts as IBM.
"""

import tomllib
import unicodedata
from collections.abc import Mapping
from pathlib import Path

# Legal forms that follow a company's name; "GmbH & Co. KG" and "Pty Ltd" lose every one of them.
COMPANY_SUFFIXES = frozenset(
    """
    inc incorporated llc llp lp ltd limited corp corporation co company plc gmbh kg ag sa sas sarl srl spa
    bv nv oy oyj ab as asa aps pty se sl kk
    """.split()
)
# Joined to the letters around them rather than splitting words, so that "S.A.", "A/S" and "Inc." read
# as the suffixes they are.
JOINING = str.maketrans("", "", ".'’/")


class CompetitorsFileError(Exception):
    """The competitors file cannot be used; `str(error)` is one line naming the file and the problem."""


def competitor_key(name: str) -> str:
    """The key all spellings of one name share: letters and digits only, case-folded, without
    accents, with company suffixes dropped from the end (never the first word).

    Idempotent: the key of a key is itself. A name with no letter or digit has the key "".
    """
    words = "".join(character if character.isalnum() else " " for character in _folded(name).translate(JOINING)).split()
    while len(words) > 1 and words[-1] in COMPANY_SUFFIXES:
        words.pop()
    key = "".join(words)
    # Folding can leave text that folds further (a ligature's letters, a letter case-folding makes);
    # folding again until nothing changes keeps the key of a key the same key.
    while (again := "".join(character for character in _folded(key) if character.isalnum())) != key:
        key = again
    return key


def _folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(character for character in decomposed if not unicodedata.combining(character))
    return unicodedata.normalize("NFKC", bare.casefold())


def detail_key(detail: str, merges: Mapping[str, str]) -> str:
    """The key a detail is stored and counted under: its `competitor_key`, or the key of the name
    COMPETITORS_FILE merges it into (`merges`, from `load_competitors`)."""
    key = competitor_key(detail)
    return merges.get(key, key)


def load_competitors(path: Path) -> dict[str, str]:
    """The merges of the TOML file at `path`: each alias's key → its canonical name's key.

    Refused: a file that is not TOML, a value that is not a list of names, a name without a letter
    or digit, an alias given to two names, and an alias that is itself a canonical name (a merge
    would then depend on the order of the file).
    """
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise CompetitorsFileError(f"{path}: no such file; expected a TOML file of names") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise CompetitorsFileError(f"{path}: cannot be read as a TOML file: {error}") from None

    canonical_keys = {name: _key_of(path, name) for name in data}
    merges: dict[str, str] = {}
    named_by: dict[str, str] = {}
    for name, aliases in data.items():
        if not isinstance(aliases, list) or not all(isinstance(alias, str) for alias in aliases):
            raise CompetitorsFileError(f'{path}: "{name}" must be a list of names, such as ["Big Blue"]')
        for alias in aliases:
            key = _key_of(path, alias)
            if key == canonical_keys[name]:
                continue
            if key in named_by and named_by[key] != name:
                raise CompetitorsFileError(f'{path}: "{alias}" is listed under both "{named_by[key]}" and "{name}"')
            if key in canonical_keys.values():
                raise CompetitorsFileError(f'{path}: "{alias}" is listed under "{name}" but is a name of its own')
            merges[key] = canonical_keys[name]
            named_by[key] = name
    return merges


def _key_of(path: Path, name: str) -> str:
    key = competitor_key(name)
    if not key:
        raise CompetitorsFileError(f'{path}: "{name}" has no letter or digit')
    return key
