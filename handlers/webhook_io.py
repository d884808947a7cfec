"""Reading a webhook's body within the size limit, and the JSON answers every webhook route gives."""

from aiohttp import web

from bot.crm.event import FieldError
from bot.crm.generic import MAX_BODY_BYTES


async def read_body(request: web.Request) -> bytes | None:
    """The body, or None when it is over MAX_BODY_BYTES (aiohttp refuses to read more, also without
    a Content-Length)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return None
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None


def field_errors(errors: list[FieldError]) -> web.Response:
    return web.json_response({"errors": [problem.as_dict() for problem in errors]}, status=400)


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
