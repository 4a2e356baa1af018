"""Preview server: the built site over HTTP on 127.0.0.1 (never on other interfaces)."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _QuietHandler(SimpleHTTPRequestHandler):
    # One line per request on stderr is what http.server does; keep it, but no DNS lookups.
    def address_string(self) -> str:
        return str(self.client_address[0])


def make_server(site: Path, port: int) -> ThreadingHTTPServer:
    """A server for `site` bound to localhost; port 0 lets the system pick a free one."""
    handler = functools.partial(_QuietHandler, directory=str(Path(site).resolve()))
    return ThreadingHTTPServer(("127.0.0.1", port), handler)
