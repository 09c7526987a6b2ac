"""The release's health check: one GET of app.healthUrl from the server itself.

A URL whose host is one of the stack's hostnames is asked of the edge on this server
(127.0.0.1, with the name for SNI and Host), not of whatever DNS says: the check is about
the release just started here, and DNS may point at a proxy or at nothing yet. Its
certificate is not verified here (it may still be on its way from the ACME CA, or be an
origin certificate only Cloudflare trusts); the tests and uptime checks verify certificates.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

TIMEOUT = 5


def check_url(url: str, hostnames: Sequence[str]) -> tuple[int, str]:
    """(HTTP status, a one-line summary of the answer); status 0 when there was no answer."""
    parts = urlsplit(url)
    name = parts.hostname or ""
    local = name in hostnames
    address = "127.0.0.1" if local else name
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection: http.client.HTTPConnection
        if secure:
            context = ssl.create_default_context()
            if local:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            connection = http.client.HTTPSConnection(name, port, timeout=TIMEOUT, context=context)
            connection.sock = context.wrap_socket(socket.create_connection((address, port), TIMEOUT), server_hostname=name)
        else:
            connection = http.client.HTTPConnection(address, port, timeout=TIMEOUT)
        try:
            connection.request("GET", path, headers={"Host": parts.netloc.rpartition("@")[2]})
            response = connection.getresponse()
            body = response.read(200).decode(errors="replace")
        finally:
            connection.close()
    except (OSError, http.client.HTTPException) as error:
        return 0, f"no answer: {error}"
    return response.status, f"HTTP {response.status}: {' '.join(body.split())}"
