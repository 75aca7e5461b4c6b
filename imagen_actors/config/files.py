"""Reading the files a user points us at (the config, ComfyUI workflow JSON), bounded.

A config or workflow is a few kilobytes of text. Whatever the path names instead is refused
at once, naming the file and the problem: a directory, a FIFO or device (opened with
O_NONBLOCK and checked with fstat before any read, so a FIFO cannot hang us), a dangling or
looping symlink, more than ``MAX_TEXT_FILE_BYTES``, bytes that are not UTF-8 or a NUL (a
binary file). The parsed documents are bounded too: YAML nested deeper than ``MAX_DEPTH`` or
expanding (aliases counted as the nodes they stand for, so a "billion laughs" file is
refused after ``MAX_NODES``) to more than ``MAX_NODES`` nodes, JSON nested deeper than
``MAX_DEPTH``.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, Final

import yaml

from imagen_actors.core.errors import ConfigError

MAX_TEXT_FILE_BYTES: Final = 1024 * 1024  # 1 MiB
MAX_DEPTH: Final = 32
MAX_NODES: Final = 10_000

_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _open_problem(path: Path, exc: OSError, missing_hint: str) -> str:
    """Why ``path`` could not be opened, and the fix."""
    if exc.errno == errno.ELOOP:
        return "is a symlink loop (it never reaches a file); fix or remove the link"
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return (
                f"is a symlink to {os.readlink(path)}, which does not exist; fix or remove the link"
            )
        return f"does not exist; {missing_hint}"
    return f"cannot be read: {exc.strerror or exc}; check the path and its permissions"


def read_text_file(
    path: Path,
    *,
    what: str,
    key: str | None = None,
    missing_hint: str = "check the path",
    max_bytes: int = MAX_TEXT_FILE_BYTES,
) -> str:
    """The UTF-8 text of the regular file ``path``, at most ``max_bytes``; otherwise a
    ConfigError "``what`` ``path`` <problem>; <fix>" (``key`` set on it)."""

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"{what} {path} {problem}", key=key)

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise fail(_open_problem(path, exc, missing_hint)) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise fail(f"is {_kind(info.st_mode)}, not a regular file; point it at a regular file")
        if info.st_size > max_bytes:
            raise fail(_too_large(info.st_size, max_bytes))
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise fail(f"cannot be read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew, or reports no size (/proc)
        raise fail(_too_large(len(data), max_bytes))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "is this the right file? save it as UTF-8"
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise fail(
            f"holds a NUL character at offset {nul}: it is a binary file, not text; "
            "is this the right file?"
        )
    return text


def _too_large(size: int, cap: int) -> str:
    limit = f"{cap / 2**20:g} MiB" if cap >= 2**20 else f"{cap} bytes"
    return (
        f"is larger than the {limit} limit for this file ({size} bytes or more); "
        "is this the right file?"
    )


class YAMLBoundError(yaml.composer.ComposerError):
    """A YAML document over MAX_DEPTH or MAX_NODES; ``problem`` says which and the fix."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than MAX_DEPTH and documents that expand to
    more than MAX_NODES nodes (an alias counts as every node of what it refers to), while
    composing: before any Python object is built or walked."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0
        self._sizes: dict[int, int] = {}

    def _next(self) -> Any:
        """The next parser event (untyped in the PyYAML stubs)."""
        return self.peek_event()  # type: ignore[no-untyped-call]

    def _refuse(self, problem: str) -> YAMLBoundError:
        return YAMLBoundError(None, None, problem, self._next().start_mark)

    def _count(self, n: int) -> None:
        self._expanded += n
        if self._expanded > MAX_NODES:
            raise self._refuse(
                f"it expands to more than {MAX_NODES} nodes (an alias counts as every node "
                "it repeats); a config is far smaller: write it without the repeated aliases"
            )

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            anchor = self._next().anchor
            if anchor in self.anchors:
                size = self._sizes.get(id(self.anchors[anchor]))
                if size is None:
                    raise self._refuse(
                        f"alias *{anchor} refers to the node that contains it; "
                        "a config cannot be recursive: remove that alias"
                    )
                self._count(size)
            return super().compose_node(parent, index)
        nested = not self.check_event(yaml.ScalarEvent)  # a mapping or a list
        if nested and self._depth >= MAX_DEPTH:
            raise self._refuse(
                f"it is nested deeper than {MAX_DEPTH} levels; a config is only a few "
                "levels deep: flatten it"
            )
        self._depth += nested
        before = self._expanded
        self._count(1)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= nested
        self._sizes[id(node)] = self._expanded - before
        return node


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` bounded in depth and expanded size (yaml.YAMLError otherwise)."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_json(text: str, *, what: str, key: str | None = None) -> Any:
    """``json.loads`` refusing documents nested deeper than MAX_DEPTH (ConfigError naming
    ``what``); json.JSONDecodeError for a syntax error."""
    deep = ConfigError(
        f"{what} is nested deeper than {MAX_DEPTH} levels; a workflow graph is only a few "
        "levels deep: is this the right file?",
        key=key,
    )
    try:
        tree = json.loads(text)
    except RecursionError:
        raise deep from None
    if _deeper_than(tree, MAX_DEPTH):
        raise deep
    return tree


def _deeper_than(tree: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth >= limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False
