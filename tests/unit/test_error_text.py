from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imagen_actors.core.error_text import SHOWN_MAX, shown

PAGE_502 = (
    "storage: HTTP 502: <!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


def test_an_html_page_becomes_its_title() -> None:
    """A gateway's HTML error page is named by its title, not pasted into the column."""
    assert shown(PAGE_502) == "storage: HTTP 502: (an HTML page titled '502 Bad Gateway')"


def test_server_paths_are_hidden_and_urls_kept() -> None:
    """Absolute file paths of the server go; a URL the operator configured stays."""
    text = "cannot open /home/comfy/ComfyUI/models/checkpoints/flux.safetensors at http://127.0.0.1:8188/prompt"
    assert shown(text) == "cannot open <path> at http://127.0.0.1:8188/prompt"


def test_a_traceback_is_one_line() -> None:
    """Newlines and runs of spaces fold into one line."""
    assert shown("Traceback:\n  line 1\n\n  boom  ") == "Traceback: line 1 boom"


@given(st.text())
def test_always_one_bounded_line(text: str) -> None:
    """Whatever the backend said, the shown form is one line of at most SHOWN_MAX chars."""
    out = shown(text)
    assert len(out) <= SHOWN_MAX and "\n" not in out and "\r" not in out
