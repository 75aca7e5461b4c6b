"""Who is asking, for mai.imagen_usage.caller: MAI_FROM_ID, tmux @mai-name, or user@host."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess


def caller_identity() -> str:
    explicit = os.environ.get("MAI_FROM_ID", "").strip()
    if explicit:
        return explicit
    if os.environ.get("TMUX") and os.environ.get("TMUX_PANE"):
        try:
            out = subprocess.run(
                ["tmux", "show-options", "-pqv", "-t", os.environ["TMUX_PANE"], "@mai-name"],
                capture_output=True,
                text=True,
                timeout=2,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            return out
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname().split('.')[0]}"
