"""How Stripe finds objects for the offline sandbox: retrieval by id, list pagination, search queries.

Kept apart from the resource rules because every resource is retrieved and listed the same way
(``No such …`` 404s; newest first, ``starting_after`` / ``ending_before`` cursors, ``limit`` 1-100,
equality filters) and search has a small language of its own; the rules modules only say which
objects there are and which fields filter them. Pure: no state, no locks, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from adapters.sandboxes.json_types import JsonDict, JsonValue
from adapters.sandboxes.stripe_wire import (
    ApiResponse,
    Params,
    StripeApiError,
    integer_param,
    invalid_request,
    reject_unknown,
    resource_missing,
    string_param,
)


class Listable(Protocol):
    """What paging needs of an object: its id (the cursor) and creation time (the order)."""

    @property
    def id(self) -> str: ...

    @property
    def created(self) -> int: ...


T = TypeVar("T", bound=Listable)

PAGE_PARAMS = frozenset({"limit", "starting_after", "ending_before", "expand"})
"""The parameters every list endpoint takes, besides its own filters."""


# ------------------------------------------------------------------------------------ retrieve and list


def retrieve(
    params: Params, objects: Mapping[str, T], object_id: str, render: Callable[[T], JsonDict], *, name: str, param: str
) -> ApiResponse:
    """``GET /v1/<objects>/<id>``: the object, or Stripe's ``No such <name>`` 404."""
    reject_unknown(params, frozenset({"expand"}))
    found = objects.get(object_id)
    if found is None:
        raise resource_missing(name, object_id, param=param)
    return ApiResponse(200, render(found), stored=False)


def filtered(items: Iterable[T], params: Params, filters: Mapping[str, Callable[[T], str | None]]) -> list[T]:
    """The objects a list endpoint shows: ``filters`` maps each filter parameter to the field it must equal."""
    reject_unknown(params, PAGE_PARAMS | frozenset(filters))
    wanted = [(field_of, string_param(params, name)) for name, field_of in filters.items()]
    return [item for item in items if all(value is None or field_of(item) == value for field_of, value in wanted)]


@dataclass(frozen=True)
class Listing(Generic[T]):
    """A resource's two read endpoints: ``GET <url>/<id>`` and ``GET <url>`` with its equality filters."""

    url: str
    name: str
    render: Callable[[T], JsonDict]
    filters: Mapping[str, Callable[[T], str | None]]

    def retrieve(self, params: Params, objects: Mapping[str, T], object_id: str) -> ApiResponse:
        return retrieve(params, objects, object_id, self.render, name=self.name, param="id")

    def page(self, params: Params, objects: Mapping[str, T]) -> ApiResponse:
        return list_page(self.url, filtered(objects.values(), params, self.filters), params, self.render)


def newest_first(items: Iterable[T]) -> list[T]:
    """Stripe's list order; a later insertion wins ties between objects created within the same second."""
    indexed = list(enumerate(items))
    indexed.sort(key=lambda pair: (pair[1].created, pair[0]), reverse=True)
    return [item for _, item in indexed]


def page_limit(params: Params) -> int:
    """``limit``: 1 to 100, default 10."""
    limit = integer_param(params, "limit", minimum=1)
    if limit is not None and limit > 100:
        raise invalid_request("This value must be less than or equal to 100.", param="limit")
    return limit or 10


def list_page(url: str, items: Iterable[T], params: Params, render: Callable[[T], JsonDict]) -> ApiResponse:
    """Stripe's cursor pagination, newest first, over ``items``."""
    ordered = newest_first(items)
    ids = [item.id for item in ordered]
    after = string_param(params, "starting_after")
    before = string_param(params, "ending_before")
    limit = page_limit(params)
    for cursor, param in ((after, "starting_after"), (before, "ending_before")):
        if cursor is not None and cursor not in ids:
            raise resource_missing("object", cursor, param=param, status=400)
    if after is not None:
        window = ordered[ids.index(after) + 1 :]
        page, has_more = window[:limit], len(window) > limit
    elif before is not None:
        window = ordered[: ids.index(before)]
        page, has_more = window[-limit:], len(window) > limit
    else:
        page, has_more = ordered[:limit], len(ordered) > limit
    data: list[JsonValue] = [render(item) for item in page]
    body: JsonDict = {"object": "list", "data": data, "has_more": has_more, "url": url}
    return ApiResponse(200, body, stored=False)


def search_page(url: str, found: list[T], params: Params, render: Callable[[T], JsonDict]) -> ApiResponse:
    """A page of search results (already in order), with Stripe's ``page`` / ``next_page`` tokens."""
    limit = page_limit(params)
    start = _search_offset(string_param(params, "page"))
    page = found[start : start + limit]
    has_more = start + limit < len(found)
    body: JsonDict = {
        "object": "search_result",
        "data": [render(item) for item in page],
        "has_more": has_more,
        "next_page": f"page_{start + limit}" if has_more else None,
        "url": url,
    }
    return ApiResponse(200, body, stored=False)


def _search_offset(page: str | None) -> int:
    if page is None:
        return 0
    if re.fullmatch(r"page_[0-9]+", page) is None:
        raise invalid_request(f"Invalid page: {page}", param="page")
    return int(page.removeprefix("page_"))


# -------------------------------------------------------------------------------------- search queries


@dataclass(frozen=True)
class SearchClause:
    """One ``[-]field<op>value`` term; ``value`` None stands for Stripe's ``null``."""

    negate: bool
    field: str
    metadata_key: str | None
    operator: str
    value: str | None


@dataclass(frozen=True)
class SearchQuery:
    """A parsed Stripe search query: clauses joined by one connective (Stripe forbids mixing)."""

    clauses: tuple[SearchClause, ...]
    connective: str

    def matches(self, value_of: Callable[[SearchClause], int | str | None]) -> bool:
        """Whether a resource matches; ``value_of`` reads the clause's field from that resource."""
        results = (_clause_matches(clause, value_of(clause)) for clause in self.clauses)
        return all(results) if self.connective == "AND" else any(results)


_CLAUSE_RE = re.compile(
    r"""\s*(?P<neg>-)?(?:metadata\[(?P<q>['"])(?P<key>.*?)(?P=q)\]|(?P<field>[a-z_]+))"""
    r"""\s*(?P<op>>=|<=|:|~|>|<)\s*(?:'(?P<sq>[^']*)'|"(?P<dq>[^"]*)"|(?P<null>null)|(?P<num>-?[0-9]+))"""
)
_CONNECTIVE_RE = re.compile(r"\s+(AND|OR)\s+")
MAX_SEARCH_CLAUSES = 10


def parse_search_query(text: str, *, fields: frozenset[str], numeric: frozenset[str]) -> SearchQuery:
    """Parse the subset of Stripe's search language the sandbox needs, failing like Stripe on the rest."""
    clauses: list[SearchClause] = []
    connectives: set[str] = set()
    position = 0
    while True:
        match = _CLAUSE_RE.match(text, position)
        if match is None:
            raise _bad_query(text, position)
        clauses.append(_clause_from(match, fields, numeric))
        position = match.end()
        connective = _CONNECTIVE_RE.match(text, position)
        if connective is None:
            break
        connectives.add(connective.group(1))
        position = connective.end()
    if text[position:].strip():
        raise _bad_query(text, position)
    if len(connectives) > 1:
        raise invalid_request("Queries cannot mix AND and OR.", param="query")
    if len(clauses) > MAX_SEARCH_CLAUSES:
        raise invalid_request(f"Queries can have at most {MAX_SEARCH_CLAUSES} clauses.", param="query")
    return SearchQuery(tuple(clauses), connectives.pop() if connectives else "AND")


def _clause_from(match: re.Match[str], fields: frozenset[str], numeric: frozenset[str]) -> SearchClause:
    key = match.group("key")
    field = "metadata" if key is not None else match.group("field")
    if field not in fields:
        raise invalid_request(f"Field '{field}' is not supported in search queries.", param="query")
    operator = match.group("op")
    if operator in ("<", ">", "<=", ">=") and field not in numeric:
        raise invalid_request(f"Field '{field}' does not support operator '{operator}'.", param="query")
    value = next((match.group(g) for g in ("sq", "dq", "num") if match.group(g) is not None), None)
    if operator == "~" and (value is None or len(value) < 3):
        raise invalid_request("Substring matches need a value of at least 3 characters.", param="query")
    return SearchClause(match.group("neg") is not None, field, key, operator, value)


def _bad_query(text: str, position: int) -> StripeApiError:
    return invalid_request(f"Invalid query: could not parse '{text}' at character {position}.", param="query")


def _clause_matches(clause: SearchClause, actual: int | str | None) -> bool:
    if clause.value is None:
        result = actual is None
    elif actual is None:
        result = False
    elif isinstance(actual, int):
        result = _compare_numbers(clause.operator, actual, clause.value)
    elif clause.operator == "~":
        result = clause.value.lower() in actual.lower()
    else:
        result = actual == clause.value
    return result != clause.negate


def _compare_numbers(operator: str, actual: int, text: str) -> bool:
    if re.fullmatch(r"-?[0-9]+", text) is None:
        return False
    wanted = int(text)
    comparisons: Mapping[str, bool] = {
        ":": actual == wanted,
        ">": actual > wanted,
        "<": actual < wanted,
        ">=": actual >= wanted,
        "<=": actual <= wanted,
    }
    return comparisons.get(operator, False)
