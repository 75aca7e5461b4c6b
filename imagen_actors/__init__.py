"""imagen-actors: an event-sourced Trio actor daemon that turns queued jobs into images."""

from __future__ import annotations

__version__ = "0.1.0"
