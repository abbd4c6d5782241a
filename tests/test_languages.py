"""The report in Chinese: every message the report can show has a translation, and a
night with PRCRS_REPORT_LANGUAGE=zh emails a Chinese report through a real SMTP server."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from prcrs_batch.features import cleaning
from prcrs_batch.nightly.explanations import LabLine
from prcrs_batch.report.i18n import LANGUAGES, catalogue_path, translations
from prcrs_batch.report.wording import MONTHS, SET_ASIDE_REASONS, Wording
from prcrs_batch.resources import SOURCE_ROOT, template_dir
from prcrs_batch.task import row_keys
from prcrs_batch.task.panel import ANALYTES
from tests.support.nightly import run_night
from tests.support.report_data import (
    AS_OF,
    EMPTY_HISTORY,
    make_patients,
    make_scores,
    summarise,
)

KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def _messages() -> set[str]:
    ids = {m[2] if isinstance(m[2], str) else m[2][0] for m in _extract()}
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


def test_every_babel_pattern_finds_its_files():
    """A module moved away from babel.cfg's patterns would drop its messages from the check
    above without a word."""
    with (SOURCE_ROOT / "babel.cfg").open() as handle:
        method_map, _ = parse_mapping_cfg(handle)
    for pattern, _method in method_map:
        assert list(SOURCE_ROOT.glob(pattern.replace("**.", "**/*."))), pattern
    extracted = {m[0] for m in _extract()}
    for module in ("wording.py", "render.py", "outbox.py", "score_command.py"):
        assert any(path.endswith(module) for path in extracted), module


def _extract():  # type: ignore[no-untyped-def]
    with (SOURCE_ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    return list(extract_from_dir(str(SOURCE_ROOT), method_map, options_map, keywords=KEYWORDS))


def test_every_reason_a_value_is_set_aside_for_has_words():
    reasons = {
        value
        for module in (cleaning, row_keys)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and re.fullmatch(r"[a-z]+(_[a-z]+)+", value)
    }
    assert len(reasons) >= 14
    for reason in reasons:
        assert reason.replace("_", " ") in SET_ASIDE_REASONS, reason


def test_the_chinese_report_has_no_english_left():
    """The model-choice reason, the collection window's "to", a value's reason for being
    set aside, a lab's points: all in Chinese (they were English in a zh report)."""
    _ = translations(template_dir(), "zh").gettext
    zh, en = Wording(_), Wording()
    spec = {
        "SYN-FALL": {"all": "insufficient", "no_cytokines": (0.4, 0.5, 0.6)},
        "SYN-PART": {"all": {1: 0.9, 2: 0.9, 3: "error"}, "cytokines": (0.2, 0.2, 0.2)},
        "SYN-NONE": {},
        "SYN-SEVERE": "severe",
    }
    summaries = summarise(make_patients(list(spec)), make_scores(spec), EMPTY_HISTORY, 0.3)
    for s in summaries:
        assert en.why(s) == s.why  # the same sentence as the JSON's English `why`
        assert not re.search(r"[a-z]{4,}", re.sub(r"no_cytokines|cytokines|all", "", zh.why(s)))
    window = replace(
        summaries[0],
        labs_first_at=datetime(2026, 11, 25, 6, 0),
        labs_latest_at=datetime(2026, 11, 26, 6, 10),
    )
    # a night's report is read the morning after its data day AS_OF
    assert zh.window(window, AS_OF) == "11月25日 06:00 至 昨天 06:10"
    assert en.window(window, AS_OF) == "06:00 25 Nov to 06:10 yesterday"
    now = Wording(_, read_days_after=0)  # `score`: labs given today, read today
    assert now.window(window, AS_OF) == "昨天 06:00 至 今天 06:10"
    assert zh.set_aside("IL6: unknown unit") == "IL6: 未知单位"
    assert zh.reason("implausible_value") == "数值不合理"
    line = LabLine("il6", "Interleukin-6", 1240.0, "pg/mL", None, None, None, 0.14, 3)
    assert zh.lab(line, AS_OF) == "白细胞介素-6 1,240 pg/mL (+14 个百分点)"
