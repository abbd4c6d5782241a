"""The README's schema section and module map are generated from the code; deploy/README
quotes this release's newest migration."""

from __future__ import annotations

from prcrs_batch.resources import SOURCE_ROOT
from prcrs_batch.results.schema_text import schema_markdown


def test_readme_schema_matches_the_tables_comments():
    readme = (SOURCE_ROOT / "README.md").read_text("utf-8")
    block = readme.split("<!-- schema:start -->\n")[1].split("<!-- schema:end -->")[0]
    assert block == schema_markdown(), (
        "regenerate with prcrs_batch.results.schema_text.schema_markdown()"
    )


def test_readme_module_map_is_the_one_made_from_the_docstrings():
    from scripts.module_map import END, START, module_map

    readme = (SOURCE_ROOT / "README.md").read_text("utf-8")
    block = readme.split(START)[1].split(END)[0]
    assert block == module_map(), "regenerate with python scripts/module_map.py --write"
    assert "`task/target.py`" in block and "**`app/`**" in block


def test_deploy_readme_quotes_this_releases_newest_revision():
    import re

    from prcrs_batch.results.migrations import head_revision

    text = (SOURCE_ROOT / "deploy" / "README.md").read_text("utf-8")
    quoted = re.findall(r"revision (\w+) \(the newest\)", text)
    assert quoted and set(quoted) == {head_revision()}, "deploy/README.md's check output"
