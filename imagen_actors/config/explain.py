"""Config errors people can act on: the dotted key path, the file, and the fix.

msgspec reports "Expected `float`, got `str` - at `$.worker.lease_s`". ``explain`` turns that
into "worker.lease_s must be a number, got the string 'soon'; write it like lease_s: 60.0
(in FILE)", finds the nearest known key for a typo, and lists the types a tagged block
accepts. ``inline_secret`` finds a secret written where the config wants the name of the
environment variable that holds it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
from msgspec import inspect as mi

from imagen_actors.core.errors import ConfigError

SAMPLE_HINT: Final = "see 'imagen-actors config init' for a commented sample"

_AT: Final = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_EXPECTED: Final = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")
_UNKNOWN: Final = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")
_MISSING: Final = re.compile(r"^Object missing required field `(?P<key>[^`]+)`$")
_INVALID: Final = re.compile(r"^Invalid value (?P<value>.+)$")
_SEGMENT: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]")

_KINDS: Final = {
    "float": "a number",
    "int": "a whole number",
    "str": "a string",
    "bool": "true or false",
    "object": "a mapping of keys",
    "array": "a list",
    "null": "null",
}

# Keys that hold a secret; the config only ever names the environment variable instead.
INLINE_SECRET: Final = re.compile(
    r"^(api_token|token|api_key|key|secret|password|service_key|access_token)$"
)
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What tokens look like: Replicate r8_, OpenAI/Stripe sk-/sk_, GitHub ghp_, Supabase sbp_,
# JWTs (Supabase service keys) eyJ...
_TOKEN_PREFIX: Final = re.compile(r"^(r8_|sk[-_]|ghp_|gho_|sbp_|eyJ)")


def _path(raw_path: str | None) -> list[str | int]:
    if not raw_path:
        return []
    return [int(i) if i else k for k, i in _SEGMENT.findall(raw_path)]


def dotted(prefix: str, path: list[str | int]) -> str:
    text = prefix
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _value_at(raw: Any, path: list[str | int]) -> Any:
    for part in path:
        in_dict = isinstance(raw, dict) and part in raw
        in_list = isinstance(raw, list) and isinstance(part, int) and part < len(raw)
        if not (in_dict or in_list):
            return None
        raw = raw[part]
    return raw


def _struct_at(root: type, raw: Any, path: list[str | int]) -> mi.StructType | None:
    """The struct type that describes the object at ``path`` (tagged unions by their tag)."""
    node: mi.Type = mi.type_info(root)
    for i, part in enumerate(path):
        node = _pick(node, _value_at(raw, path[:i]))
        if isinstance(node, mi.StructType):
            field = next((f for f in node.fields if f.encode_name == part), None)
            if field is None:
                return None
            node = field.type
        elif isinstance(node, mi.DictType):
            node = node.value_type
        elif isinstance(node, mi.ListType):
            node = node.item_type
        else:
            return None
    node = _pick(node, _value_at(raw, path))
    return node if isinstance(node, mi.StructType) else None


def _pick(node: mi.Type, raw: Any) -> mi.Type:
    if not isinstance(node, mi.UnionType):
        return node
    structs = [t for t in node.types if isinstance(t, mi.StructType)]
    if isinstance(raw, dict):
        for s in structs:
            if s.tag_field is not None and raw.get(s.tag_field) == s.tag:
                return s
    return structs[0] if len(structs) == 1 else node


def _union_tags(root: type, raw: Any, path: list[str | int]) -> tuple[str, list[str]] | None:
    """For a tagged union at ``path``: (tag field, accepted tags)."""
    node: mi.Type = mi.type_info(root)
    parent = _struct_at(root, raw, path[:-1]) if path else None
    if parent is not None:
        field = next((f for f in parent.fields if f.encode_name == path[-1]), None)
        node = field.type if field is not None else node
    elif path:
        return None
    structs = [t for t in getattr(node, "types", ()) if isinstance(t, mi.StructType)]
    tags = [str(s.tag) for s in structs if s.tag_field is not None]
    if not tags:
        return None
    return str(structs[0].tag_field), tags


def _kind(name: str) -> str:
    return " or ".join(_KINDS.get(part.strip(), f"`{part.strip()}`") for part in name.split("|"))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _example(struct: mi.StructType | None, key: str, hint: str) -> str:
    field = None if struct is None else next((f for f in struct.fields if f.name == key), None)
    default = None if field is None else field.default
    if isinstance(default, bool):
        return f"; write it like {key}: {'true' if default else 'false'}"
    if isinstance(default, int | float | str) and default != "":
        return f"; write it like {key}: {default}"
    return f"; {hint}"


def explain(
    exc: msgspec.ValidationError,
    *,
    root: type,
    raw: Any,
    prefix: str,
    source: str | None = None,
    hint: str = SAMPLE_HINT,
) -> ConfigError:
    """``exc`` from converting ``raw`` into ``root`` as a ConfigError naming the key path
    (``prefix`` + the path inside ``raw``) and, when given, the file. ``hint`` ends a
    message that has no better fix (no default to show as an example)."""
    m = _AT.match(str(exc))
    assert m is not None  # the pattern matches any text
    what, path = m.group("what"), _path(m.group("path"))
    where = f" (in {source})" if source else ""
    if um := _UNKNOWN.match(what):
        key = dotted(prefix, [*path, um.group("key")])
        struct = _struct_at(root, raw, path)
        fields = struct.fields if struct is not None else ()
        known = [f.encode_name for f in fields if f.encode_name != "source"]
        if struct is not None and struct.tag_field:
            known.insert(0, struct.tag_field)
        guess = difflib.get_close_matches(um.group("key"), known, n=1)
        fix = f"did you mean {dotted(prefix, [*path, guess[0]])}? " if guess else ""
        return ConfigError(
            f"{key} is not a known setting; {fix}rename or remove it "
            f"(known under {dotted(prefix, path) or 'the top level'}: {', '.join(known)}){where}",
            key=key,
        )
    if mm := _MISSING.match(what):
        key = dotted(prefix, [*path, mm.group("key")])
        tags = _union_tags(root, raw, path)
        if tags is not None and tags[0] == mm.group("key"):
            fix = f"add {tags[0]}: with one of {', '.join(tags[1])}"
        else:
            fix = f"add {mm.group('key')}: to {dotted(prefix, path) or 'the top level'}; {hint}"
        return ConfigError(f"{key} is required; {fix}{where}", key=key)
    if im := _INVALID.match(what):
        key = dotted(prefix, path)
        tags = _union_tags(root, raw, path[:-1])
        accepted = f"one of {', '.join(tags[1])}" if tags else "a valid value"
        return ConfigError(
            f"{key} {im.group('value')} is not accepted; use {accepted}{where}", key=key
        )
    key = dotted(prefix, path) or prefix or "the top level"
    if em := _EXPECTED.match(what):
        leaf = next((p for p in reversed(path) if isinstance(p, str)), "")
        got = _value_at(raw, path)
        got_text = f"{_kind(em.group('got'))} {_shown(got)}" if got is not None else "null"
        example = _example(_struct_at(root, raw, path[:-1]), leaf, hint) if leaf else ""
        return ConfigError(
            f"{key} must be {_kind(em.group('want'))}, got {got_text}{example}{where}", key=key
        )
    return ConfigError(f"{key}: {what}; {hint}{where}", key=key)


def _walk(node: Any, path: list[str | int]) -> Iterator[tuple[list[str | int], Any, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield [*path, str(k)], k, v
            yield from _walk(v, [*path, str(k)])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, [*path, i])


def _env_field_for(path: list[str | int], raw: Any) -> str:
    """The ``*_env`` key that should name the variable instead of an inline secret."""
    section = path[0] if path else ""
    if section == "storage":
        return "key_env"
    if section == "backends" and len(path) == 3:
        block = _value_at(raw, path[:2])
        if isinstance(block, dict) and block.get("type") == "replicate":
            return "api_token_env"
    return f"{path[-1]}_env"


def inline_secret(raw: Any, *, source: str) -> ConfigError | None:
    """A secret written in the file: an inline token/key/password, a password inside
    ``database.url``, or a ``*_env`` key that holds a value instead of a variable name."""
    for path, key, value in _walk(raw, []):
        key_path = dotted("", path)
        if not isinstance(value, str) or not value:
            continue
        if isinstance(key, str) and INLINE_SECRET.match(key):
            env_key = _env_field_for(path, raw)
            return ConfigError(
                f"{key_path} looks like a secret written inline; put it in an environment "
                f"variable and name that variable in {dotted('', [*path[:-1], env_key])} "
                f"(in {source})",
                key=key_path,
            )
        if isinstance(key, str) and key.endswith("_env"):
            if _TOKEN_PREFIX.match(value):
                held = "what looks like the secret itself"
            elif not ENV_NAME.fullmatch(value):
                held = "a value that is not a variable name"
            else:
                continue
            return ConfigError(
                f"{key_path} must name an environment variable (like REPLICATE_API_TOKEN), "
                f"but it holds {held}; export the secret as a variable and write the "
                f"variable's name here (in {source})",
                key=key_path,
            )
    return _password_in_url(raw, source=source)


def _password_in_url(raw: Any, *, source: str) -> ConfigError | None:
    url = _value_at(raw, ["database", "url"])
    if not isinstance(url, str):
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password or re.search(r"(^|\s)password\s*=", url):
        return ConfigError(
            "database.url contains a password written inline; remove it and set the DSN in "
            "$IMAGEN_WORKER_DATABASE_URL instead, or keep the password in PGPASSWORD or "
            f"~/.pgpass (in {source})",
            key="database.url",
        )
    return None
