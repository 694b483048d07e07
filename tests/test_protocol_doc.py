"""docs/PROTOCOL.md's header tables against the schema `decode` checks (protocol.HEADERS)."""

from __future__ import annotations

import re
from pathlib import Path

from tribe_stream.protocol import HEADERS, TOPICS

DOC = (Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md").read_text()
COLUMNS = ["field", "type", "required", "meaning"]


def _cells(line: str) -> list[str]:
    """A markdown table row's cells (`\\|` is a pipe inside a cell)."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def doc_tables() -> dict[str, dict[str, tuple[str, str]]]:
    """{topic or "*" (every header): {field: (type, required)}} from the doc's field tables."""
    tables: dict[str, dict[str, tuple[str, str]]] = {}
    section, rows = None, None
    for line in DOC.splitlines():
        if line.startswith("#"):
            topic = re.search(r"`tribe\.(\w+)`", line)
            section = "*" if "Fields in every header" in line else topic and topic[1]
            rows = None
        elif line.startswith("|") and section is not None:
            cells = _cells(line)
            if cells == COLUMNS:
                assert section not in tables, f"two field tables under {section}"
                rows = tables[section] = {}
            elif rows is not None and not set(line) <= set("|-"):
                name = re.fullmatch(r"`(\w+)`", cells[0])
                assert name and len(cells) == 4, f"odd row in the {section} table: {line}"
                assert name[1] not in rows, f"{name[1]} twice in the {section} table"
                rows[name[1]] = (cells[1], cells[2])
        else:
            rows = None
    return tables


def test_every_topic_has_a_field_table():
    assert set(doc_tables()) == {"*", *HEADERS} == {"*", *TOPICS}


def test_each_table_matches_the_schema():
    tables = doc_tables()
    common = tables["*"]
    for topic, schema in HEADERS.items():
        assert not common.keys() & tables[topic].keys(), f"{topic} repeats fields of every header"
        documented = {**common, **tables[topic]}
        declared = {f.name: (f.type.doc, "yes" if f.required else "no") for f in schema.fields}
        for name in documented.keys() - declared.keys():
            raise AssertionError(f"PROTOCOL.md documents {topic} field {name!r}; HEADERS lacks it")
        for name in declared.keys() - documented.keys():
            raise AssertionError(f"HEADERS declares {topic} field {name!r}; PROTOCOL.md lacks it")
        for name, (doc_type, required) in declared.items():
            assert documented[name] == (doc_type, required), (topic, name, documented[name])


def test_the_doc_names_every_topic_where_it_lists_them():
    frames = next(line for line in DOC.splitlines() if line.startswith("| 0 topic |"))
    kind = next(line for line in DOC.splitlines() if line.startswith("| `kind` |"))
    other = DOC.split("## Other languages", 1)[1]
    for name, topic in TOPICS.items():
        assert f"`{topic.decode()}`" in frames and f"`{topic.decode()}`" in other, topic
        assert f"`{name}`" in kind, name
    assert "one of the four" in DOC.split("## Validation", 1)[1]
