"""A mail that fits: whatever the night, the HTML part stays under Gmail's clipping size
(about 102 KB) with its footer, every alert is in the mail body or the attached complete
report, the text part lists every alert, and nothing is cut mid-tag. Sent through a real
SMTP server (aiosmtpd)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from prcrs_batch.report.fit import sent_bytes
from prcrs_batch.report.mailer import send_report
from prcrs_batch.report.render import HTML_BUDGET_BYTES, build_report
from tests.support.report_data import crowded_night

LIMIT = 100 * 1024  # under Gmail's ~102 KB, measured decoded and as sent
VOID = {"meta", "br", "img", "hr", "input", "link"}


class TagBalance(HTMLParser):
    """Every element closed in order: a document cut mid-way (or mid-tag) fails."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:]}")
        else:
            self.open.pop()

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        self.text.append(data)


def parsed(html: str) -> str:
    """The HTML's text, after checking that every tag is complete and closed in order."""
    parser = TagBalance()
    parser.feed(html)
    parser.close()
    assert parser.errors == [] and parser.open == [], (parser.errors[:3], parser.open)
    assert parser.rawdata == "", "the document ends inside a tag"
    return " ".join(parser.text)


def send(report, sink):  # type: ignore[no-untyped-def]
    send_report(
        report,
        host=sink.host,
        port=sink.port,
        sender="prcrs-batch@hospital.example",
        recipients=["oncall@hospital.example"],
        starttls=False,
        attempts=1,
    )
    [message] = sink.messages
    return message


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_night_of_300_alerts_fits_and_lists_every_alert(smtp_sink, language):
    night = crowded_night(300, 150)
    report = build_report(**night, language=language)
    message = send(report, smtp_sink)

    html_part = message.get_body(("html",))
    html = html_part.get_content()
    assert len(html.encode("utf-8")) < LIMIT and len(html_part.as_bytes()) < LIMIT
    body = parsed(html)
    [attached] = [p for p in message.walk() if p.get_content_disposition() == "attachment"]
    assert attached.get_filename() == "prcrs-2026-11-26.html" and attached.get_filename() in body
    complete = parsed(attached.get_content())
    text = message.get_body(("plain",)).get_content()

    alerting = [s.patient_id for s in night["summaries"] if s.alert]
    assert len(alerting) == 300
    for pid in alerting:
        assert pid in text  # the text part: every alert
        assert pid in body or pid in complete
    # the body: the first alerts as cards (new and rising first), then compact rows with
    # their risks and top lab, and what is left is counted and named
    cards = re.findall(r'<div class="pid">', html)
    assert len(cards) == 12
    rows = re.findall(r'<tr class="a"><td class="p"><strong>([^<]+)</strong>', html)
    left = 300 - len(cards) - len(rows)
    assert left < 150  # most alerts are in the body itself
    if left:
        [more] = re.findall(r'<td class="more">([^<]+)</td>', html)[:1]
        assert str(left) in more and attached.get_filename() in more
    # the footer is always there, after everything
    for words in ("0b7e2c8e-run-test", "2026-11-26 23:59"):
        assert words in body[-1500:]
    assert ("Decision support only" if language == "en" else "仅作决策支持") in body[-600:]


@pytest.mark.parametrize(
    "n_alerts,n_others,id_width",
    [(0, 2000, 4), (2000, 500, 4), (400, 0, 300)],  # a big cohort; many alerts; long ids
)
def test_the_html_part_fits_at_any_count(n_alerts, n_others, id_width):
    night = crowded_night(n_alerts, n_others, n_severe=50, id_width=id_width, charted=0)
    report = build_report(**night)
    assert sent_bytes(report.html) <= HTML_BUDGET_BYTES < LIMIT
    body = parsed(report.html)
    assert "Decision support only" in body[-400:] and "0b7e2c8e-run-test" in body
    complete = parsed(report.complete_html)
    for s in night["summaries"]:
        assert s.patient_id in complete


def test_a_small_night_is_whole_in_the_mail():
    """The demo's size: every alert in the body (cards, then rows), nothing left out."""
    night = crowded_night(25, 127)
    report = build_report(**night)
    body = parsed(report.html)
    assert "more alerts" not in body and "more (lower risks)" not in body
    for s in night["summaries"]:
        assert s.patient_id in body
    assert report.html.count('<div class="pid">') == 12
