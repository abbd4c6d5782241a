"""The report in Chinese: every message the report can show has a translation, and a
night with PRCRS_REPORT_LANGUAGE=zh emails a Chinese report through a real SMTP server."""

from __future__ import annotations

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from prcrs_batch.report.i18n import LANGUAGES, catalogue_path
from prcrs_batch.report.wording import MONTHS
from prcrs_batch.resources import SOURCE_ROOT, template_dir
from prcrs_batch.task.panel import ANALYTES
from tests.support.nightly import run_night

KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def _messages() -> set[str]:
    with (SOURCE_ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found = extract_from_dir(str(SOURCE_ROOT), method_map, options_map, keywords=KEYWORDS)
    ids = {m[2] if isinstance(m[2], str) else m[2][0] for m in found}
    return ids | {a.display_name for a in ANALYTES} | set(MONTHS)


def test_every_message_has_a_translation():
    wanted = _messages()
    assert len(wanted) > 100
    for language in LANGUAGES:
        if language == "en":
            continue
        with catalogue_path(template_dir(), language).open("rb") as handle:
            catalogue = read_po(handle)
        translated = {
            m.id if isinstance(m.id, str) else m.id[0]
            for m in catalogue
            if m.id and m.string and all(m.string if isinstance(m.string, tuple) else [m.string])
        }
        assert sorted(wanted - translated) == [], language


def test_a_chinese_night_emails_a_chinese_report(settings, warehouse, smtp_sink):
    settings = settings.model_copy(
        update={
            "smtp_host": smtp_sink.host,
            "smtp_port": smtp_sink.port,
            "smtp_starttls": False,
            "alert_to": ["oncall@hospital.example"],
            "alert_threshold": 0.02,
            "report_language": "zh",
        }
    )
    summary = run_night(settings, warehouse)
    assert summary.email.startswith("sent"), summary.email
    [message] = smtp_sink.messages
    assert "例预警" in message["Subject"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for body in (text, html):
        assert "发生重度" in body and "回输后第" in body and "使 3 天风险升高最多的检验" in body
        assert "Risk of severe CRS" not in body and "after infusion" not in body
    assert '<html lang="zh">' in html
