"""Stage 7: what the mail's HTML part lists when a night has more than fits.

Gmail clips an HTML part past about 102 KB, and what it hides is the end: the footer with
the data cut-off, the run id and "Decision support only". The mail therefore keeps its
HTML part under a byte budget whatever the night, measured as the mail carries it
(`sent_bytes`: transfer-encoded, so a Chinese report's base64 counts too; whether Gmail
counts the part encoded or decoded is not documented, and this is the larger). Its lists
give way in this order, each only as far as needed: the other active patients (the least
urgent, lowest risks last), then the patients already severe, then the compact rows of the
further alerts (lowest last), then the alert cards. What is cut is counted in the mail and
is in the attached complete report; the plain-text part lists every alert.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from email.message import EmailMessage
from typing import Any

from prcrs_batch.report.wording import FIRST_STATES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listing:
    """How many of each list one rendering shows (each list in its own order)."""

    cards: int  # the first alerts, as cards
    rows: int  # the alerts after them, one compact row each
    severe: int  # the patients already severe
    others: int  # the other active patients, in the compact table
    watch: int = 0  # the patients on watch, one compact row each


GIVES_WAY = ("others", "severe", "watch", "rows", "cards")  # the order in which lists are shortened


def sent_bytes(html: str) -> int:
    """Bytes of an HTML part as a mail carries it: its headers and its body encoded as the
    mailer's `email` package encodes it (quoted-printable or base64).

    >>> sent_bytes("<p>ok</p>") > len("<p>ok</p>")
    True
    """
    part = EmailMessage()
    part.set_content(html, subtype="html")
    return len(part.as_bytes())


def fit_listing(
    render: Callable[[Listing], str],
    wanted: Listing,
    budget: int,
    measure: Callable[[str], int] = sent_bytes,
) -> tuple[str, Listing]:
    """The rendering of `wanted`, or of the longest lists that keep its `measure` within
    `budget`, shortening the lists in `GIVES_WAY` order; returns the HTML and what it lists.

    Each list is shortened by bisection (a few renderings, not one per row). When even
    empty lists do not fit (a night whose notes alone are that long), the empty rendering
    is returned and the overrun logged.

    >>> def render(listing):
    ...     return "<p>" + "x" * (10 * listing.rows + 100 * listing.others) + "</p>"
    >>> html, shown = fit_listing(render, Listing(0, 5, 0, 3), budget=207, measure=len)
    >>> shown, len(html)
    (Listing(cards=0, rows=5, severe=0, others=1, watch=0), 157)
    """

    def size(listing: Listing) -> int:
        return measure(render(listing))

    shown = wanted
    if size(shown) <= budget:
        return render(shown), shown
    for name in GIVES_WAY:
        without = replace(shown, **{name: 0})
        if size(without) > budget:
            shown = without
            continue
        low, high = 0, getattr(shown, name)  # low fits; high does not
        while high - low > 1:
            middle = (low + high) // 2
            if size(replace(shown, **{name: middle})) <= budget:
                low = middle
            else:
                high = middle
        shown = replace(shown, **{name: low})
        break
    html = render(shown)
    if measure(html) > budget:
        logger.warning(
            "mail HTML is %d bytes with every list empty (budget %d)", measure(html), budget
        )
    cut = {f.name: getattr(wanted, f.name) - getattr(shown, f.name) for f in fields(Listing)}
    logger.info("mail HTML over %d bytes: left to the attachment %s", budget, cut)
    return html, shown


def listed_context(
    cards: list[dict[str, Any]], listed: Mapping[str, list[dict[str, Any]]], listing: Listing
) -> dict[str, Any]:
    """The template's lists for one rendering: the first alerts as cards, the next as compact
    rows (each in its group: new and rising first, then continuing and falling), the
    already severe and the other patients, and how many of each are left to the attachment.

    `cards`: every alert's card, in the report's order; `listed`: "watch", "severe" and
    "others".
    """
    shown = cards[: listing.cards + listing.rows]
    groups = {}
    for key, first in (("first", True), ("later", False)):
        mine = [(i, c) for i, c in enumerate(shown) if (c["state"] in FIRST_STATES) == first]
        groups[key] = {
            "cards": [c for i, c in mine if i < listing.cards],
            "rows": [c for i, c in mine if i >= listing.cards],
        }
    return {
        "first": groups["first"],
        "later": groups["later"],
        "severe": listed["severe"][: listing.severe],
        "others": listed["others"][: listing.others],
        "on_watch": listed["watch"][: listing.watch],
        "watch_left": len(listed["watch"]) - listing.watch,
        "alerts_left": len(cards) - len(shown),
        "severe_left": len(listed["severe"]) - listing.severe,
        "others_left": len(listed["others"]) - listing.others,
    }
