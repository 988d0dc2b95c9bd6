"""The web console: static pages served by `wulian serve` on the API's port (see router)."""

from __future__ import annotations

from wulian.console.router import mount_console

__all__ = ["mount_console"]
