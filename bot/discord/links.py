"""Links in what a model wrote, made unable to lure (OWASP LLM05, improper output handling).

In Discord a bare link unfurls into a preview, and a masked link `[text](address)` shows text
that need not be its address. `disarm_links` rewrites a draft so that every link shows the address
it leads to, in angle brackets (`<https://…>`: clickable, never unfurled), except links to the
allowed domains, which stay as written. Code is left alone: Discord renders no links in it.

The parsing follows Discord's markdown (simple-markdown's rules for escapes, code, masked links,
angle-bracket links and bare links) and errs towards breaking a link up: any `](` before an address
that is not read as a masked link is split to `] (`, so no other reading of the text can render one.
"""

from __future__ import annotations

import re
import string

# An address: a scheme (https:, discord:, javascript:, …) and something after it.
ADDRESS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s)]")
SCHEME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "+.-")
ESCAPE = re.compile(r"\\[^0-9A-Za-z\s\]]")  # an escaped "]" still closes a link's text: the net below sees it
# A code block (``` … ```) or inline code (`…`, ``…``), as Discord reads them.
CODE_SPAN = re.compile(r"```[\s\S]*?```|(`+)[\s\S]*?[^`]\1(?!`)")
# [text](address) or [text](<address>); the text may hold [brackets], the address one level of (parentheses).
MASKED_LINK = re.compile(
    r"\[((?:\[[^\]]*\]|[^\[\]]|\](?=[^\[]*\])){0,1000})\]"
    r"\(\s*(?:<([^<>\s]*)>|([^\s()<>]*(?:\([^\s()<>]*\)[^\s()<>]*)*))\s*\)"
)
BEFORE_AN_ADDRESS = re.compile(r"\]\(\s*<?" + ADDRESS.pattern)
URL_CHARACTER = re.compile(r"[^\s<>\\]")  # a backslash is no part of an address: browsers read it as "/"
TRAILING_PUNCTUATION = ".,:;\"'!?*_~|"
ALLOWABLE = re.compile(r"https?://([A-Za-z0-9.-]+)(?::[0-9]+)?(?:[/?#]|$)", re.IGNORECASE)


def disarm_links(text: str, allowed_domains: tuple[str, ...] = ()) -> str:
    """Show every link's address and let none unfurl, except links to `allowed_domains`.

    `[text](address)` becomes `text (<address>)` and a bare address `<address>`. A link to an
    allowed domain or any of its subdomains (`docs.example.com` for `example.com`, never
    `example.com.evil.io`) stays as written: bare, or masked if its text holds no address of its own.
    Applied until nothing changes, since a rewrite can bring pieces of the text together anew.
    """
    domains = tuple(domain.strip().strip(".").lower() for domain in allowed_domains if domain.strip(" ."))
    while (disarmed := _disarm_once(text, domains)) != text:
        text = disarmed
    return text


def is_allowed(address: str, domains: tuple[str, ...]) -> bool:
    """Whether an http(s) address leads to one of `domains` (lower case) or a subdomain of one.

    Only a plain host counts: user info (`allowed.com@evil.io`), backslashes and anything else a
    browser might read another way make the address not allowed.
    """
    match = ALLOWABLE.match(address)
    if match is None:
        return False
    host = match.group(1).lower().rstrip(".")
    return any(host == domain or host.endswith("." + domain) for domain in domains)


def _disarm_once(text: str, domains: tuple[str, ...]) -> str:
    bare = _bare_addresses(text)
    out: list[str] = []
    position = 0
    while position < len(text):
        character = text[position]
        end, replacement = position + 1, character
        if character == "\\" and (escape := ESCAPE.match(text, position)):
            end, replacement = escape.end(), escape.group()
        elif character == "`" and (code := CODE_SPAN.match(text, position)):
            end, replacement = code.end(), code.group()
        elif character == "[" and (link := MASKED_LINK.match(text, position)) and ADDRESS.match(_address_of(link)):
            end, replacement = link.end(), _masked(link, domains)
        elif character == "]" and BEFORE_AN_ADDRESS.match(text, position):
            replacement = "] "
        elif character == "<" and (address_end := bare.get(position + 1)) and text.startswith(">", address_end[1]):
            end = address_end[1] + 1
            replacement = text[position:end]  # already in angle brackets: shows its address, never unfurls
        elif position in bare:
            end = bare[position][0]
            address = text[position:end]
            replacement = address if is_allowed(address, domains) else f"<{address}>"
        out.append(replacement)
        position = end
    return "".join(out)


def _address_of(link: re.Match[str]) -> str:
    return link.group(2) if link.group(2) is not None else link.group(3)


def _masked(link: re.Match[str], domains: tuple[str, ...]) -> str:
    text, address = link.group(1), _address_of(link)
    if is_allowed(address, domains) and "://" not in text:
        return link.group()
    if text.strip() == address:
        return f"<{address}>"
    return f"{_disarm_once(text, domains)} (<{address}>)"


def _bare_addresses(text: str) -> dict[int, tuple[int, int]]:
    """Each bare address by where it starts: where it ends, and where its run of address characters
    ends (before the punctuation trimmed off its end, which Discord does not link either)."""
    runs_end_at = _address_runs(text)
    addresses = {}
    for separator in re.finditer("://", text):
        start = separator.start()
        while start > 0 and text[start - 1] in SCHEME_CHARACTERS:
            start -= 1
        scheme = text[start:separator.start()].lower()
        # Discord links http(s) wherever it stands, even glued to a word: start there if the scheme ends so.
        known = next((len(name) for name in ("https", "http") if scheme.endswith(name)), None)
        start = separator.start() - known if known else start + len(scheme) - len(scheme.lstrip(string.digits + "+.-"))
        if start == separator.start():
            continue
        run_end = runs_end_at[separator.end()]
        end = _trimmed_end(text, start, separator.end(), run_end)
        if end > separator.end():
            addresses[start] = (end, run_end)
    return addresses


def _address_runs(text: str) -> list[int]:
    """For each position, where the run of address characters from there ends: at a character no
    address holds, or at a `](` before an address (the net in `_disarm_once` splits those)."""
    ends = list(range(len(text) + 1))
    for position in range(len(text) - 1, -1, -1):
        if URL_CHARACTER.match(text[position]) and not (text[position] == "]" and BEFORE_AN_ADDRESS.match(text, position)):
            ends[position] = ends[position + 1]
    return ends


def _trimmed_end(text: str, start: int, earliest: int, end: int) -> int:
    """The end of the address without the punctuation after it, as in `(see https://x.io/a).`: a closing
    bracket is part of the address only if the address opened it."""
    count = {bracket: text.count(bracket, start, end) for bracket in "()[]"}
    while end > earliest:
        last = text[end - 1]
        if last in TRAILING_PUNCTUATION or (last in ")]" and count[last] > count["(" if last == ")" else "["]):
            if last in count:
                count[last] -= 1
            end -= 1
        else:
            break
    return end


