"""RFC 3986 vectors: §5.2.4's own examples, §5.4's normal and abnormal references, §6.2.2 and §6.2.3."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import InvalidRequestError, Reason
from broker.protocol import rfc9449
from broker.protocol.rfc3986 import (
    MAX_URL_LENGTH,
    normalize_http_url,
    normalize_percent_encoding,
    remove_dot_segments,
    split,
)

BASE = "http://a/b/c/d;p?q"  # §5.4

# §5.4.1 Normal Examples.
NORMAL = [
    ("g:h", "g:h"),
    ("g", "http://a/b/c/g"),
    ("./g", "http://a/b/c/g"),
    ("g/", "http://a/b/c/g/"),
    ("/g", "http://a/g"),
    ("//g", "http://g"),
    ("?y", "http://a/b/c/d;p?y"),
    ("g?y", "http://a/b/c/g?y"),
    ("#s", "http://a/b/c/d;p?q#s"),
    ("g#s", "http://a/b/c/g#s"),
    ("g?y#s", "http://a/b/c/g?y#s"),
    (";x", "http://a/b/c/;x"),
    ("g;x", "http://a/b/c/g;x"),
    ("g;x?y#s", "http://a/b/c/g;x?y#s"),
    ("", "http://a/b/c/d;p?q"),
    (".", "http://a/b/c/"),
    ("./", "http://a/b/c/"),
    ("..", "http://a/b/"),
    ("../", "http://a/b/"),
    ("../g", "http://a/b/g"),
    ("../..", "http://a/"),
    ("../../", "http://a/"),
    ("../../g", "http://a/g"),
]

# §5.4.2 Abnormal Examples (strict parsers, so "http:g" stays as it is).
ABNORMAL = [
    ("../../../g", "http://a/g"),
    ("../../../../g", "http://a/g"),
    ("/./g", "http://a/g"),
    ("/../g", "http://a/g"),
    ("g.", "http://a/b/c/g."),
    (".g", "http://a/b/c/.g"),
    ("g..", "http://a/b/c/g.."),
    ("..g", "http://a/b/c/..g"),
    ("./../g", "http://a/b/g"),
    ("./g/.", "http://a/b/c/g/"),
    ("g/./h", "http://a/b/c/g/h"),
    ("g/../h", "http://a/b/c/h"),
    ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
    ("g;x=1/../y", "http://a/b/c/y"),
    ("g?y/./x", "http://a/b/c/g?y/./x"),
    ("g?y/../x", "http://a/b/c/g?y/../x"),
    ("g#s/./x", "http://a/b/c/g#s/./x"),
    ("g#s/../x", "http://a/b/c/g#s/../x"),
    ("http:g", "http:g"),
]


def resolve(base: str, reference: str) -> str:
    """§5.2.2 (strict) with §5.2.3's merge and §5.3's recomposition, written out so that §5.4's vectors
    test `split` and `remove_dot_segments` the way the RFC uses them."""
    b_scheme, b_authority, b_path, b_query, _ = split(base)
    scheme, authority, path, query, fragment = split(reference)
    if scheme is not None:
        path = remove_dot_segments(path)
    elif authority is not None:
        scheme, path = b_scheme, remove_dot_segments(path)
    else:
        scheme, authority = b_scheme, b_authority
        if not path:
            path = b_path
            query = query if query is not None else b_query
        elif path.startswith("/"):
            path = remove_dot_segments(path)
        elif b_authority is not None and not b_path:  # §5.2.3 merge
            path = remove_dot_segments("/" + path)
        else:
            path = remove_dot_segments(b_path[: b_path.rfind("/") + 1] + path)
    text = f"{scheme}:" if scheme is not None else ""
    text += f"//{authority}" if authority is not None else ""
    text += path
    text += f"?{query}" if query is not None else ""
    return text + (f"#{fragment}" if fragment is not None else "")


@pytest.mark.parametrize(("reference", "target"), NORMAL + ABNORMAL)
def test_reference_resolves_as_rfc3986_5_4_says_when_dot_segments_are_removed(
    reference: str, target: str
) -> None:
    assert resolve(BASE, reference) == target


def test_every_5_4_vector_is_checked() -> None:
    print(f"RFC 3986 §5.4: {len(NORMAL)} normal and {len(ABNORMAL)} abnormal references resolved")
    assert (len(NORMAL), len(ABNORMAL)) == (23, 19)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b/c/./../../g", "/a/g"),  # §5.2.4's first example
        ("mid/content=5/../6", "mid/6"),  # and its second
        ("/..", "/"),
        ("/a/..", "/"),
        ("/a/.", "/a/"),
        ("/a//../b", "/a/b"),
        ("", ""),
    ],
)
def test_dot_segments_are_removed_as_5_2_4_shows_when_given_its_examples(path: str, expected: str) -> None:
    assert remove_dot_segments(path) == expected


def textbook_remove_dot_segments(path: str) -> str:
    """§5.2.4 exactly as written, buffers as strings; slow on long paths, plain to check by eye."""
    output, rest = "", path
    while rest:
        if rest.startswith("../"):
            rest = rest[3:]
        elif rest.startswith("./"):
            rest = rest[2:]
        elif rest.startswith("/./") or rest == "/.":
            rest = "/" + rest[3:]
        elif rest.startswith("/../") or rest == "/..":
            rest = "/" + rest[4:]
            output = output[: output.rfind("/")] if "/" in output else ""
        elif rest in {".", ".."}:
            rest = ""
        else:
            slash = rest.find("/", 1)
            slash = len(rest) if slash < 0 else slash
            output, rest = output + rest[:slash], rest[slash:]
    return output


@settings(max_examples=500, derandomize=True)
@given(st.text(alphabet="/.a;", max_size=24))
def test_dot_segments_are_removed_as_the_textbook_steps_do_when_paths_are_arbitrary(path: str) -> None:
    assert remove_dot_segments(path) == textbook_remove_dot_segments(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("%3a", "%3A"),  # §6.2.2.1: "%3a" and "%3A" are equivalent, upper case is the normal form
        ("%7Esmith", "~smith"),  # §6.2.2.2's example
        ("%41%5a%61%7a%30%39%2D%2E%5F%7E", "AZaz09-._~"),  # every kind of unreserved character
        ("%2f%5c%25%20%c3%a6", "%2F%5C%25%20%C3%A6"),  # reserved and non-ASCII stay encoded
        ("plain", "plain"),
    ],
)
def test_percent_encoding_is_normalised_as_6_2_2_says(text: str, expected: str) -> None:
    assert normalize_percent_encoding(text) == expected


@pytest.mark.parametrize("text", ["%", "%2", "%zz", "a%g1", "%%41"])
def test_percent_encoding_is_refused_when_an_escape_is_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="two hex digits"):
        normalize_percent_encoding(text)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # §6.2.2's example, with https for its scheme: "eXAMPLE://a/./b/../b/%63/%7bfoo%7d".
        ("HTTPS://a.example/./b/../b/%63/%7bfoo%7d", "https://a.example/b/c/%7Bfoo%7D"),
        ("HTTP://www.EXAMPLE.com/", None),  # §6.2.2.1's example is refused: plain http off loopback
        # §6.2.3: these are all the same URL.
        ("https://example.com", "https://example.com/"),
        ("https://example.com/", "https://example.com/"),
        ("https://example.com:/", "https://example.com/"),
        ("https://example.com:443/", "https://example.com/"),
        ("http://localhost:80", "http://localhost/"),
        ("http://127.0.0.1:443/x", "http://127.0.0.1:443/x"),
        ("https://example.com/a?b=%2f#c", "https://example.com/a"),  # RFC 9449 §4.2: no query, no fragment
    ],
)
def test_http_url_is_in_normal_form_when_6_2_2_and_6_2_3_apply(url: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(InvalidRequestError) as caught:
            normalize_http_url(url)
        assert caught.value.reason is Reason.URL_NOT_ALLOWED
        return
    assert normalize_http_url(url) == expected
    assert normalize_http_url(expected) == expected  # a normal form is its own normal form


def test_url_length_is_checked_before_parsing_when_longer_than_the_limit() -> None:
    path = "/" + "a" * (MAX_URL_LENGTH - len("https://h.example/"))
    longest = "https://h.example" + path
    assert len(longest) == MAX_URL_LENGTH
    assert normalize_http_url(longest) == longest
    with pytest.raises(InvalidRequestError) as caught:
        normalize_http_url(longest + "a")
    assert caught.value.field == "url"
    assert str(MAX_URL_LENGTH) in caught.value.description
    # A malformed URL one character over the limit fails on its length, so nothing parsed it.
    with pytest.raises(InvalidRequestError) as malformed:
        normalize_http_url("https://[" + "x" * MAX_URL_LENGTH)
    assert str(MAX_URL_LENGTH) in malformed.value.description


def test_nothing_caches_caller_urls_when_many_distinct_urls_are_normalised() -> None:
    # Issue 7 point 3: an lru_cache keyed by the URL held every caller's URL; urlsplit keeps one too.
    assert not hasattr(rfc9449.normalize_htu, "cache_info")
    before = urlsplit.cache_info().currsize  # type: ignore[attr-defined]
    for number in range(200):
        rfc9449.normalize_htu(f"https://h.example/{number}?q={'x' * 1000}")
    after = urlsplit.cache_info().currsize  # type: ignore[attr-defined]
    print(f"urlsplit cache entries before/after 200 distinct URLs: {before}/{after}")
    assert after == before


URL_PIECES = st.sampled_from(
    ["https://", "http://", "h.example", "127.0.0.1", "[::1]", ":", "443", "/", ".", "..", "%2e", "%2F", "%",
     "%c3%a6", "@", "?", "#", ";", "a", "\\", " ", "\x00", "\u00e6", "["]
)  # fmt: skip


def outcome(url: str) -> str | InvalidRequestError:
    try:
        return normalize_http_url(url)
    except InvalidRequestError as error:
        return error


@settings(max_examples=600, derandomize=True)
@given(st.lists(URL_PIECES, max_size=12).map("".join))
def test_normal_form_is_stable_and_only_invalid_request_is_raised_when_input_is_arbitrary(url: str) -> None:
    htu = outcome(url)
    if isinstance(htu, InvalidRequestError):
        assert htu.field == "url"
        assert len(htu.message) < 120  # a fixed description, never the URL
        return
    assert normalize_http_url(htu) == htu
    assert "?" not in htu
    assert "#" not in htu
    assert "/./" not in htu + "/"
    assert "/../" not in htu + "/"
