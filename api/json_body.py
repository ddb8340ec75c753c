"""Reads JSON bodies keeping decimals exact and refusing text PostgreSQL cannot store."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

MAX_BODY_BYTES = 1024 * 1024
# Deep enough for any plant's metadata; shallow enough for every recursive step after it
# (validation, the projector's JSON encoder, which stops at 255 levels).
MAX_DEPTH = 32


async def _read_body_within_limit(request: Request) -> None:
    """Reads the body, refusing it as soon as it is known to be too large."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, "Request body too large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(413, "Request body too large")
        chunks.append(chunk)
    request._body = b"".join(chunks)


# Decimals stay as written ("4.50" keeps its scale); floats would not. One decoder for
# all: `json.loads` with `parse_float` builds a decoder and its scanner on every call.
_EXACT = json.JSONDecoder(parse_float=Decimal)


def exact_json(body: bytes) -> Any:
    """`json.loads(body, parse_float=Decimal)`, the same steps with one decoder."""
    return _EXACT.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _bad_text(value: str) -> bool:
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates such as "\ud800"
        return True
    return False


def _find_bad_text(value: Any, loc: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if isinstance(value, str):
        return loc if _bad_text(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _bad_text(key):
                return (*loc, key.encode("utf-8", "replace").decode())
            found = _find_bad_text(item, (*loc, key))
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_bad_text(item, (*loc, index))
            if found:
                return found
    return None


def _invalid(loc: tuple[Any, ...], kind: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": loc, "msg": message, "input": None}])


class ExactJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = exact_json(await self.body())
        return self._json


def screened_json(body: bytes) -> Any:
    """The body parsed with exact decimals, or a clear 422 for JSON nothing should store.

    Malformed JSON raises `json.JSONDecodeError`, which FastAPI answers itself (422).
    """
    try:
        data = exact_json(body)
    except json.JSONDecodeError:
        raise
    except (RecursionError, UnicodeDecodeError, ValueError) as e:
        # ValueError: e.g. an integer literal beyond Python's 4300-digit limit.
        raise _invalid(("body",), "json_invalid", "Body is not usable JSON") from e
    if _depth(data) > MAX_DEPTH:
        raise _invalid(("body",), "json_too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
    bad = _find_bad_text(data, ("body",))
    if bad is not None:
        raise _invalid(
            bad, "string_unsupported_characters", "Text must be valid UTF-8 without NUL characters"
        )
    return data


class ExactJsonRoute(APIRoute):
    """Parses and screens the body before FastAPI does, so refusals are clear 4xx answers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact_json_handler(request: Request) -> Response:
            if request.method in ("GET", "HEAD", "DELETE", "OPTIONS"):
                return await handler(request)
            request = ExactJsonRequest(request.scope, request.receive)
            await _read_body_within_limit(request)
            if request._body:
                try:
                    request._json = screened_json(request._body)
                except json.JSONDecodeError:
                    pass  # FastAPI answers these itself, as a 422 json_invalid
            return await handler(request)

        return exact_json_handler


def plain_json(value: Any) -> Any:
    """Decimals inside free-form metadata become numbers, as a JavaScript client sent them."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_json(v) for v in value]
    return value
