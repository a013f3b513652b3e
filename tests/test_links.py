"""Links in drafts cannot lure: every address is shown and none unfurls, except allowed ones; code is untouched."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.discord.links import CODE_SPAN, disarm_links

ALLOWED = ("example.com",)


@pytest.mark.parametrize(("draft", "shown"), [
    ("[click here](https://evil.io/x)", "click here (<https://evil.io/x>)"),
    ("[click here](<https://evil.io/x>)", "click here (<https://evil.io/x>)"),
    ("see https://evil.io/x.", "see <https://evil.io/x>."),
    ("**https://evil.io**, then", "**<https://evil.io>**, then"),
    ("(https://en.wikipedia.org/wiki/Foo_(bar))", "(<https://en.wikipedia.org/wiki/Foo_(bar)>)"),
    ("[wiki](https://en.wikipedia.org/wiki/Foo_(bar))", "wiki (<https://en.wikipedia.org/wiki/Foo_(bar)>)"),
    ("[[inner](https://a.io)](https://b.io)", "inner (<https://a.io>) (<https://b.io>)"),
    ("[a](https://a.io)](https://b.io)", "a] (<https://a.io>) (<https://b.io>)"),
    ("[https://b.io](https://b.io)", "<https://b.io>"),
    ("[see https://a.io](https://b.io)", "see <https://a.io> (<https://b.io>)"),
    ("[x](https://a.io \"title\")", "[x] (<https://a.io> \"title\")"),
    ("\\[escaped](https://evil.io)", "\\[escaped] (<https://evil.io>)"),
    ("[a\\](https://evil.io)", "a\\ (<https://evil.io>)"),  # Discord reads no escapes inside a link's text
    ("\\](https://evil.io)", "\\] (<https://evil.io>)"),
    ("\\<https://evil.io>", "\\<<https://evil.io>>"),
    ("<https://evil.io/already>", "<https://evil.io/already>"),
    ("xhttps://evil.io", "x<https://evil.io>"),
    ("[Open](discord://-/channels/1/2)", "Open (<discord://-/channels/1/2>)"),
    ("[run](javascript:alert(1))", "run (<javascript:alert(1)>)"),
    ("ftp://files.evil.io/a", "<ftp://files.evil.io/a>"),
    ("```\nhttps://evil.io [x](https://evil.io)\n```", "```\nhttps://evil.io [x](https://evil.io)\n```"),
    ("run `curl https://evil.io` now", "run `curl https://evil.io` now"),
    ("``a ` https://evil.io``", "``a ` https://evil.io``"),
    ("```\nhttps://evil.io", "```\n<https://evil.io>"),  # an unclosed fence is no code block
])
def test_every_link_shows_its_address_and_does_not_unfurl(draft: str, shown: str) -> None:
    assert disarm_links(draft) == shown


@pytest.mark.parametrize("text", [
    "example.com and www.example.org", "[1](2)", "f(x)[i](j)", "http:/broken", "ratio 3:2, at 10:30", "[a](note: b)",
    "<@123456789012345678> <#42> <:smile:123>", "mailto without brackets: a@b.io", "https://", "😀 **bold** __u__",
])
def test_text_that_merely_looks_like_a_link_is_unchanged(text: str) -> None:
    assert disarm_links(text) == text


@pytest.mark.parametrize(("draft", "shown"), [
    ("https://example.com/a", "https://example.com/a"),
    ("https://docs.EXAMPLE.com/a?b#c", "https://docs.EXAMPLE.com/a?b#c"),
    ("[the docs](https://docs.example.com/a)", "[the docs](https://docs.example.com/a)"),
    ("[https://evil.io](https://example.com)", "<https://evil.io> (<https://example.com>)"),
    ("https://example.com.evil.io/a", "<https://example.com.evil.io/a>"),
    ("https://badexample.com", "<https://badexample.com>"),
    ("https://example.com@evil.io", "<https://example.com@evil.io>"),
    ("https://evil.io\\@example.com", "<https://evil.io>\\@example.com"),
    ("[docs](https://example.com.evil.io)", "docs (<https://example.com.evil.io>)"),
    ("[app](discord://example.com/x)", "app (<discord://example.com/x>)"),
])
def test_links_to_allowed_domains_stay_as_written_and_lookalikes_do_not(draft: str, shown: str) -> None:
    assert disarm_links(draft, ALLOWED) == shown


# --- every text ----------------------------------------------------------------------------------

SCHEME_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
MASKED_ADDRESS = re.compile(r"\]\(\s*<?([A-Za-z][A-Za-z0-9+.-]*:[^\s<>()]+)")
ANGLE_BRACKETED = re.compile(r"<[^:\s<>]+:/[^\s<>]+>")
BARE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s<>\\]*")  # a browser ends the host at a backslash (as at "/")
ESCAPED = re.compile(r"\\[^0-9A-Za-z\s]")


def visible(text: str, angle_brackets_too: bool = False) -> str:
    """The text with code blanked out (by NUL: neither a space nor part of an address), as Discord renders no
    link there; and addresses in angle brackets, if asked. An escaped backtick opens no code, nor one in an
    address: like Discord, the first rule to match where the text stands wins."""
    out, position = [], 0
    while position < len(text):
        escaped = ESCAPED.match(text, position)
        code = CODE_SPAN.match(text, position) if text[position] == "`" else None
        angle = ANGLE_BRACKETED.match(text, position)
        target = MASKED_ADDRESS.match(text, position)  # a masked link's address ends at its ")"
        address = BARE.match(text, position)  # backticks in an address open no code either
        token = escaped or code or angle or target or address
        end = token.end() if token else position + 1
        if code:
            out.append("\0" * (end - position))
        elif angle and angle_brackets_too:
            out.append("<" + "\0" * (end - position - 1))  # an address before it ends at "<"
        else:
            out.append(text[position:end])
        position = end
    return "".join(out)


def allowed(address: str) -> bool:
    """An http(s) address that a browser takes to example.com or a subdomain, or nowhere at all.

    After the host, the authority may hold a port, or characters no host may hold (the address is then
    invalid); never user info (`example.com@evil.io`), percent-encoding or non-ASCII characters, which a
    browser could decode or map into a host of its own (`example.com%2eevil.io`, `example.com．evil.io`).
    """
    match = re.match(r"https?://([A-Za-z0-9.-]*)(.*)", address, re.IGNORECASE | re.DOTALL)
    if match is None:
        return False
    host, after = match.group(1).lower().rstrip("."), re.split(r"[/?#\\]", match.group(2), maxsplit=1)[0]
    on_example = host == "example.com" or host.endswith(".example.com")
    return on_example and re.fullmatch(r"(:[0-9]*)?[\x21-\x7e]*", after) is not None and not set(after) & set("@%")


HOSTS = st.sampled_from([
    "example.com", "docs.example.com", "EXAMPLE.com.", "example.com.evil.io", "badexample.com", "evil.io", "еxample.com",
    "example.com@evil.io", "example.com:80@evil.io", "evil.io\\@example.com", "example.com%2eevil.io", "example.com．evil.io",
    "xn--e1afmkfd.xn--p1ai",
])
ADDRESSES = st.builds(
    lambda scheme, host, path: f"{scheme}{host}{path}",
    st.sampled_from(["https://", "http://", "HTTPS://", "discord://", "ftp://", "javascript:", "xhttps://", "1http://"]),
    HOSTS,
    st.sampled_from(["", "/", "/a_(b)", "/a)", "/x?y=1&z=(2)#f", "/a.", "/a,", "/**", "/](x", "/`x`", "/<x>"]),
)
LINK_FREE = st.sampled_from([
    "word", " ", "\n", "[", "]", "(", ")", "<", ">", "`", "```", "\\", "\\[", "\\<", "\\`", "*", "_", ":", "/", ".",
    "example.com", "[a](b)", "f(x)", "10:30", "<@123>", "😀", "漢字", "e\u0301", "](", "](<", "<:x:1>", "http:/x",
])
# Without backticks: `visible` would read code where Discord reads a masked link's text first.
LINK_TEXTS = st.one_of(LINK_FREE.filter(lambda text: "`" not in text), ADDRESSES.filter(lambda text: "`" not in text))
LINKS = st.one_of(
    ADDRESSES,
    st.builds("<{}>".format, ADDRESSES),
    st.builds("[{}]({})".format, LINK_TEXTS, ADDRESSES),
    st.builds("[{}](<{}>)".format, LINK_TEXTS, ADDRESSES),
    st.builds("`{}`".format, ADDRESSES),
    st.builds("```\n{}\n```".format, ADDRESSES),
)
TEXTS = st.lists(st.one_of(LINK_FREE, LINKS), max_size=30).map("".join)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_after_the_rewrite_no_link_but_an_allowed_one_hides_its_address_or_unfurls(text: str) -> None:
    disarmed = disarm_links(text, ALLOWED)
    shown = visible(disarmed)
    for masked in MASKED_ADDRESS.finditer(shown):  # whatever could still read as [text](address)
        assert allowed(masked.group(1)), (disarmed, masked.group())
    # Angle brackets show the address and keep it from unfurling; any other address must be allowed.
    unbracketed = visible(disarmed, angle_brackets_too=True)
    checked_to = 0
    for bare in SCHEME_START.finditer(unbracketed):
        if bare.start() < checked_to or re.search(r"\]\(\s*<?$", unbracketed[:bare.start()]):
            continue  # part of the address before, or a masked link's address (checked above)
        scheme = bare.group().lower()
        # Discord links http(s) even glued to a word before it (xhttps://…).
        start = bare.end() - next((len(f"{name}://") for name in ("https", "http") if scheme.endswith(f"{name}://")),
                                  len(scheme))
        address = unbracketed[start:bare.end()] + re.match(r"[^\s<>\\]*", unbracketed[bare.end():]).group()  # type: ignore[union-attr]
        address = address.rstrip(".,:;\"')]*_~|!?")  # not linked by Discord at an address's end
        assert allowed(address), (disarmed, address)
        checked_to = start + len(address)
    assert disarm_links(disarmed, ALLOWED) == disarmed


CODE_ADDRESSES = ADDRESSES.filter(lambda address: "`" not in address)
# No address after "://", none after "](" (whatever the brackets hold, that would read as a masked link).
WITHOUT_LINKS = st.lists(LINK_FREE, max_size=40).map("".join).filter(
    lambda text: "://" not in text and not re.search(r"\]\(\s*<?[A-Za-z][A-Za-z0-9+.-]*:[^\s)]", text))


@settings(max_examples=300, deadline=None)
@given(WITHOUT_LINKS)
def test_text_without_links_is_unchanged(text: str) -> None:
    assert disarm_links(text, ALLOWED) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.builds("`{}`".format, CODE_ADDRESSES), st.builds("```\n{}\n```".format, CODE_ADDRESSES),
                          st.sampled_from(["\n", "word", "[x]", "(y)"])), max_size=20).map(" ".join))
def test_links_in_code_are_left_as_written(text: str) -> None:
    assert disarm_links(text, ALLOWED) == text
