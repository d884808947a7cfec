"""A Slack message or view as a person reads it: the Block Kit walked into plain lines, buttons as
`[Label]` (`[*Label*]` for the primary one, which Slack paints green; a menu as
`[Placeholder ▾: option | option]`), so a test (or a reviewer) reads what a rep or a manager sees,
and what a screen reader says for each button."""

from typing import Any

from slack_sdk.models.views import View

from bot.views.data import MessageContent


def plain_text(message: MessageContent | View) -> str:
    """Each block a paragraph; a message's `text` fallback first, after `text:`; a modal's title
    first and its buttons last."""
    if isinstance(message, View):
        view = message.to_dict()
        blocks = view["blocks"]
        modal = view["type"] == "modal"
        paragraphs = [f"## {view['title']['text']}"] if modal else []
    else:
        rendered = message.as_kwargs()
        blocks = rendered["blocks"]
        modal = False
        paragraphs = [f"text: {rendered['text']}"]
    paragraphs += [_block(block) for block in blocks]
    if modal:
        paragraphs.append(" ".join(f"[{view[key]['text']}]" for key in ("close", "submit") if key in view))
    return "\n\n".join(paragraphs)


def _block(block: dict[str, Any]) -> str:
    kind = block["type"]
    if kind == "divider":
        return "---"
    if kind == "header":
        return f"# {block['text']['text']}"
    if kind == "context":
        return " ".join(element.get("text", "") for element in block["elements"])
    if kind == "actions":
        return " ".join(_button(element) for element in block["elements"])
    if kind == "section":
        lines = [block["text"]["text"]] if "text" in block else []
        lines += [field["text"] for field in block.get("fields", [])]
        if "accessory" in block:
            lines.append(_button(block["accessory"]))
        return "\n".join(lines)
    if kind == "input":
        return _input(block)
    return f"({kind})"


def _input(block: dict[str, Any]) -> str:
    """`Label: [what the field holds]`, or its placeholder in italics while empty; the hint below."""
    element = block["element"]
    held = (
        element.get("initial_option", {}).get("text", {}).get("text")
        or element.get("initial_value")
        or element.get("initial_date")
    )
    placeholder = element.get("placeholder", {}).get("text")
    shown = held or (f"_{placeholder}_" if placeholder else "empty")
    optional = " (optional)" if block.get("optional") else ""
    lines = [f"{block['label']['text']}{optional}: [{shown}]"]
    if "hint" in block:
        lines.append(f"  {block['hint']['text']}")
    return "\n".join(lines)


def _button(element: dict[str, Any]) -> str:
    if element["type"] == "static_select":
        options = " | ".join(option["text"]["text"] for option in element["options"])
        return f"[{element['placeholder']['text']} ▾: {options}]"
    text = element["text"]["text"]
    label = f"[*{text}*]" if element.get("style") == "primary" else f"[{text}]"
    spoken = element.get("accessibility_label")
    return f"{label} (says: {spoken})" if spoken else label
