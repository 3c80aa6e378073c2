"""The server's outermost layer: one access-log line per request, and no unexpected exception unanswered."""

import logging
import time

from fastapi.responses import JSONResponse

log = logging.getLogger("runtime.serve")


def error_response(status: int, message: str, headers=None) -> JSONResponse:
    """``{"error": message}`` with ``status``; text that is not valid UTF-8 is escaped, never fatal."""
    return JSONResponse({"error": message.encode("utf-8", "backslashreplace").decode()}, status, headers=headers)


class AccessLog:
    """ASGI wrapper: one log line per request, and an unexpected exception logged once, answered as JSON."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), []

        async def sending(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            if not status:
                await error_response(500, "internal error")(scope, receive, sending)
        finally:
            log.info("%s %s %s %.1f ms", scope["method"], scope["path"], status[0] if status else "-",
                     1000 * (time.perf_counter() - started))
