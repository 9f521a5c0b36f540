"""toolserver: a real-time MCP-over-WebSocket tool server.

Start it with ``python -m toolserver serve`` (see ``--help``). The package is
the system under test of the regression tracker and a reference for servers
users point the service at; docs/ARCHITECTURE.md holds its contracts.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
