"""The docs stay true to the code: generated tables, samples, links.

Reference tables in docs/ sit between ``<!-- generated: NAME ... -->`` and
``<!-- end generated -->`` and must equal what the code renders now. After
changing a setting, a metric or a feature, regenerate them in place:

    python -m tests.unit.test_docs --write
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from streamseg.api.openapi import Customer
from streamseg.features.registry import markdown_table
from streamseg.metrics import ApiMetrics, Metrics, metrics_table
from streamseg.publish.records import SegmentUpdate
from streamseg.settings import Settings, settings_table
from streamseg.topics import topic_specs

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

#: generated region name -> (the page holding it, what renders it)
GENERATED: dict[str, tuple[Path, Callable[[], str]]] = {
    "streamseg.features.registry.markdown_table": (DOCS / "model.md", markdown_table),
    "streamseg.settings.settings_table": (DOCS / "operations.md", settings_table),
    "streamseg.metrics.metrics_table": (DOCS / "operations.md", metrics_table),
}
REGION = re.compile(r"(<!-- generated: (\S+)[^\n]*-->\n)(.*?)(\n<!-- end generated -->)", re.S)
FENCE = re.compile(r"^```.*?^```[^\n]*$", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def regions(text: str) -> dict[str, str]:
    return {m.group(2): m.group(3) for m in REGION.finditer(text)}


def write() -> list[Path]:
    """Re-render every generated region in place; returns the pages changed."""
    changed = []
    for path in sorted({p for p, _ in GENERATED.values()}):
        text = path.read_text()
        new = REGION.sub(lambda m: m.group(1) + GENERATED[m.group(2)][1]() + m.group(4), text)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_table__matches_the_code(name: str) -> None:
    path, render = GENERATED[name]
    text = path.read_text()
    assert regions(text).get(name) == render(), (
        f"{path.name}: the {name} table is stale; run python -m tests.unit.test_docs --write")
    assert render() in text


def test_settings_table__has_every_field_and_hides_secret_defaults() -> None:
    rows = {line.split("|")[1].strip(" `"): line for line in settings_table().splitlines()[2:]}
    assert list(rows) == [f"STREAMSEG_{name.upper()}" for name in Settings.model_fields]
    for name, field in Settings.model_fields.items():
        if field.annotation is SecretStr:
            assert rows[f"STREAMSEG_{name.upper()}"].split("|")[3].strip() == "(secret: not shown)"


def test_metrics_table__has_every_registered_metric() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    ApiMetrics(registry)
    registered = {f.name + ("_total" if f.type == "counter" else "") for f in registry.collect()}
    listed = {line.split("|")[1].strip(" `") for line in metrics_table().splitlines()[2:]}
    assert listed == registered


def _json_after(heading: str) -> dict[str, object]:
    section = README.read_text().split(heading, 1)[1]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    return json.loads(block)


def test_readme_samples__are_valid_records_of_the_code() -> None:
    update = SegmentUpdate.model_validate(_json_after("### A `segment-updates.v1` record"))
    answer = Customer.model_validate(_json_after("### A lookup answer"))
    assert answer.customer_id == update.customer_id and answer.segment_id == update.segment_id


def test_readme_diagram__names_every_topic() -> None:
    diagram = README.read_text().split("```\n", 2)[1]
    for spec in topic_specs(Settings()):
        assert spec.name.removeprefix("streamseg.") in diagram, spec.name


def test_readme__stays_a_front_page() -> None:
    assert len(README.read_text().splitlines()) <= 300


def slugs(text: str) -> set[str]:
    """GitHub's heading anchors of a Markdown page."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", text).splitlines():
        m = re.match(r"#{1,6} +(.*?) *#*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).replace("`", "").lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_relative_links__point_to_existing_files_and_headings(page: Path) -> None:
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in slugs(path.read_text()):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.name}: {broken}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="rewrite the generated tables in place")
    args = ap.parse_args()
    if args.write:
        changed = write()
        print("\n".join(str(p.relative_to(ROOT)) for p in changed) or "up to date")
    else:
        stale = [name for name, (path, render) in GENERATED.items()
                 if regions(path.read_text()).get(name) != render()]
        print("\n".join(f"stale: {name}" for name in stale) or "up to date")
        raise SystemExit(1 if stale else 0)


if __name__ == "__main__":
    main()
