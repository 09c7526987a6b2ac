"""The documentation says what the code does: the settings reference is the model's, links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dropship.config import reference
from dropship.config.sections import SECTIONS

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


def test_settings_reference_is_generated_from_the_model() -> None:
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == reference.render(), "docs/settings.md is stale: python -m dropship.config.reference > docs/settings.md"


def test_settings_reference_lists_every_key_of_the_model() -> None:
    text = reference.render()
    for name, model in SECTIONS.items():
        for field in model.model_fields.values():
            assert f"| `{name}.{field.alias}` |" in text


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
        assert (doc.parent / target).exists(), f"{doc.relative_to(ROOT)} links to {target}, which does not exist"
