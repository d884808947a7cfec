"""The repository stands alone: what README.md, manifest.yml and the code's docstrings and comments
cite is in the repository, and the Slack app asks for the scopes the code calls for, no more."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
MANIFEST = (ROOT / "manifest.yml").read_text()
CODE = sorted(
    path for folder in ("bot", "handlers", "storage", "tests", "bench") for path in (ROOT / folder).rglob("*.py")
)
CITING = [ROOT / "README.md", ROOT / "manifest.yml", ROOT / ".ci" / "run", *CODE]


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def one_line(text: str) -> str:
    """Joins lines, and the `#` of comment lines, so that a citation broken over two lines reads whole."""
    return re.sub(r"\s*\n\s*(#\s*)?", " ", text)


@pytest.mark.parametrize("path", CITING, ids=name)
def test_every_markdown_file_cited_is_in_the_repository(path: Path) -> None:
    cited = set(re.findall(r"[\w./-]*\w\.md\b", path.read_text()))

    missing = {
        document for document in cited if not (ROOT / document).exists() and not (path.parent / document).exists()
    }
    assert not missing, f"{name(path)} cites files that are not in the repository: {sorted(missing)}"


# "(README.md, "Settings")", "README.md ("The deal webhook")", "(README.md: "Reminders", "Escalation")"
README_CITATION = re.compile(r'README\.md(?:[,:]\s*|\s*\()((?:"[^"]+"[,:]?\s*)+)')


def readme_titles() -> list[str]:
    """The README's headings and the bold titles that open its bullets and paragraphs."""
    headings = [line.lstrip("#").strip() for line in README.splitlines() if line.startswith("#")]
    return headings + re.findall(r"\*\*([^*]+)\*\*", README)


@pytest.mark.parametrize("path", [path for path in CITING if "README.md" in path.read_text()], ids=name)
def test_every_readme_section_cited_exists(path: Path) -> None:
    titles = readme_titles()
    cited = [
        section
        for citation in README_CITATION.finditer(one_line(path.read_text()))
        for section in re.findall(r'"([^"]+)"', citation.group(1))
    ]

    missing = [section for section in cited if not any(title.startswith(section) for title in titles)]
    assert not missing, f"{name(path)} cites README sections that do not exist: {missing}"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_every_link_inside_the_readme_reaches_a_heading() -> None:
    anchors = {github_anchor(line.lstrip("#").strip()) for line in README.splitlines() if line.startswith("#")}
    linked = set(re.findall(r"\]\(#([^)]+)\)", README))

    assert linked, "the README links none of its sections: this test reads it wrong"
    assert not linked - anchors, sorted(linked - anchors)


# The bot scope each Web API method the code calls needs (each method's page on docs.slack.dev).
# views.* need none; neither do answers posted to a response_url.
SCOPE_OF_METHOD: dict[str, str | tuple[str, ...] | None] = {
    "chat_postMessage": "chat:write",
    "chat_update": "chat:write",
    "chat_postEphemeral": "chat:write",
    "users_info": "users:read",
    "users_lookupByEmail": "users:read.email",
    "views_open": None,
    "views_update": None,
    "views_push": None,
    "views_publish": None,
    "files_upload_v2": "files:write",
    "files_getUploadURLExternal": "files:write",
    "files_completeUploadExternal": "files:write",
    "conversations_open": "im:write",
    # A DM's, a public channel's or a private channel's: the bot reads all three.
    "conversations_history": ("im:history", "channels:history", "groups:history"),
    "conversations_replies": ("im:history", "channels:history", "groups:history"),
}
SLACK_CALL = re.compile(r"\.((?:chat|users|views|conversations|files|reactions|pins|team|usergroups|im)_\w+)\(")


def scopes_of(scope: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """The scopes a method needs, as SCOPE_OF_METHOD gives them: one, several, or none."""
    if scope is None:
        return ()
    return (scope,) if isinstance(scope, str) else scope


def called_methods() -> set[str]:
    sources = [path for folder in ("bot", "handlers") for path in (ROOT / folder).rglob("*.py")]
    return {method for path in sources for method in SLACK_CALL.findall(path.read_text())}


def manifest_bot_scopes() -> set[str]:
    """The list under `oauth_config: scopes: bot:`, up to the first line indented less than it."""
    scopes = set()
    for line in MANIFEST.split("\n    bot:\n", 1)[1].splitlines():
        if not line.startswith("      "):
            break
        scopes.update(re.findall(r"^      - ([\w:.]+)", line))
    return scopes


def test_the_slack_app_asks_for_the_scopes_the_code_calls_for_and_no_more() -> None:
    methods = called_methods()
    assert {"chat_postMessage", "users_lookupByEmail"} <= methods, "the scan finds no calls: it reads the code wrong"
    unknown = methods - SCOPE_OF_METHOD.keys()
    assert not unknown, f"add the scope of {sorted(unknown)} to SCOPE_OF_METHOD (and to the manifest and README)"
    needed = {scope for method in methods for scope in scopes_of(SCOPE_OF_METHOD[method])}
    # users:read.email is granted only with users:read; the slash command needs `commands`.
    needed |= {"users:read", "commands"}

    assert manifest_bot_scopes() == needed


def test_the_readme_says_why_the_app_needs_each_scope() -> None:
    scopes_section = README.split("The manifest gives the bot these scopes", 1)[1].split("\n\n")[1]
    explained = set(re.findall(r"^- `([\w:.]+)`", scopes_section, flags=re.MULTILINE))

    assert explained == manifest_bot_scopes()
