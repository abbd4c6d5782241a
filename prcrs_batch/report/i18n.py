"""The report's language: gettext catalogues (templates/locale/<lang>/LC_MESSAGES/prcrs.po),
read with Babel and used by Jinja's i18n extension and by render.py's own sentences.

The .po files are the source; they are compiled in memory when first used, so no
compiled .mo file can drift from its source. English is the msgid itself.
"""

from __future__ import annotations

import gettext
import io
from functools import lru_cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LANGUAGES = ("en", "zh")
DOMAIN = "prcrs"


def catalogue_path(template_dir: Path, language: str) -> Path:
    """Where a language's .po file lives under a templates folder."""
    return template_dir / "locale" / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=8)
def translations(template_dir: Path, language: str) -> gettext.NullTranslations:
    """The language's translations; English (or a missing catalogue) is the identity.

    >>> translations(Path("/nonexistent"), "en").gettext("all clear")
    'all clear'
    """
    if language not in LANGUAGES:
        raise ValueError(f"unknown report language {language!r} (one of {', '.join(LANGUAGES)})")
    path = catalogue_path(template_dir, language)
    if language == "en" or not path.is_file():
        return gettext.NullTranslations()
    with path.open("rb") as handle:
        catalogue = read_po(handle, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalogue)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)
