"""A free TCP port on 127.0.0.1 (for process-group rendezvous and local HTTP servers in tests)."""

import socket


def free_port() -> int:
    """A port the OS had free a moment ago (it may be taken again before the caller binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
