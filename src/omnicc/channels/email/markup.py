"""HTML in email: sanitised with nh3 before any browser sees it, and read as plain text.

Mail HTML is hostile by default (scripts, event handlers, tracking pixels, forms, CSS that
overlays the page), so the agent's desk only ever gets what `sanitize_html` returns: a short
list of formatting tags, links that open outside, and images only when the message carried them
itself (a `cid:` part, turned into a `data:` URI here); a remote image is dropped, so reading an
email does not tell its sender anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Final

import nh3

TAGS: Final = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "div", "em", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "small", "span", "strong",
    "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
})
ATTRIBUTES: Final = {
    "a": {"href", "title"}, "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"},
}
DROPPED_WITH_CONTENT: Final = frozenset({"script", "style", "title", "head", "iframe", "object",
                                         "embed", "noscript", "template", "svg", "math"})
IMAGE_DATA: Final = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]+$")
BLOCKS: Final = frozenset({"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
                           "blockquote", "pre", "table", "hr", "ul", "ol"})
SKIPPED: Final = DROPPED_WITH_CONTENT


def sanitize_html(html: str, images: Mapping[str, str] | None = None) -> str:
    """`html` safe to show: `images` maps a Content-ID (without brackets) to the `data:` URI of
    the part it names, so inline pictures still show."""
    known = images or {}

    def keep(element: str, attribute: str, value: str) -> str | None:
        if element == "img" and attribute == "src":
            if value.lower().startswith("cid:"):
                return known.get(value[4:].strip("<>"))
            return value if IMAGE_DATA.match(value) else None
        if attribute == "href":
            return value if value.lower().startswith(("http://", "https://", "mailto:")) \
                else None
        return value

    return nh3.clean(html, tags=set(TAGS), clean_content_tags=set(DROPPED_WITH_CONTENT),
                     attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
                     attribute_filter=keep, url_schemes={"http", "https", "mailto", "cid", "data"},
                     link_rel="noopener noreferrer nofollow",
                     set_tag_attribute_values={"a": {"target": "_blank"}})


class _TextReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._link: str | None = None
        self._link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED:
            self._skipping += 1
        elif tag in BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("\n- ")
        elif tag == "a":
            self._link = dict(attrs).get("href")
            self._link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in BLOCKS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append("\t")
        if tag == "a" and self._link:
            text = "".join(self._link_text).strip()
            if self._link.startswith(("http://", "https://")) and self._link != text:
                self.parts.append(f" <{self._link}>")
            self._link = None

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        self.parts.append(data)
        if self._link is not None:
            self._link_text.append(data)


def html_to_text(html: str) -> str:
    """The plain-text alternative of an HTML body: paragraphs and list items on their own
    lines, links with their address, scripts and styles left out."""
    reader = _TextReader()
    reader.feed(html)
    reader.close()
    text = "".join(reader.parts).replace("\xa0", " ")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
