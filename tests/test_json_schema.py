"""The JSON report against the JSON Schema shipped in the package (funnel/report.schema.json)."""

from __future__ import annotations

import dataclasses
import json
import typing
from importlib import resources

import jsonschema
import pytest

from funnel import model
from _report_factory import make_report
from conftest import SAMPLE_EVENTS, SAMPLE_SESSIONS, run_cli
from funnel.render import render


@pytest.fixture(scope="module")
def schema() -> dict:
    text = resources.files("funnel").joinpath("report.schema.json").read_text(encoding="utf-8")
    s = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(s)
    return s


def errors(schema: dict, doc: dict) -> list[str]:
    v = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in v.iter_errors(doc)]


def test_schema_is_draft_2020_12_and_closed_at_the_top(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert schema["required"] == [f.name for f in dataclasses.fields(model.Report)]
    assert schema["properties"]["schema_version"] == {"const": model.SCHEMA_VERSION}


def _record_types() -> dict[str, type]:
    return {n: c for n, c in vars(model).items()
            if isinstance(c, type) and dataclasses.is_dataclass(c) and issubclass(c, model.Record)}


def test_schema_covers_every_field_of_every_record(schema):
    """Adding a field to funnel/model.py without the schema (or the reverse) fails here."""
    defs = schema["$defs"]
    seen = {"Report"}
    todo = [model.Report]
    while todo:
        cls = todo.pop()
        node = schema if cls is model.Report else defs[cls.__name__]
        names = [f.name for f in dataclasses.fields(cls)]
        assert list(node["properties"]) == names, cls.__name__      # same keys, same order
        assert node["required"] == names, cls.__name__
        assert node["additionalProperties"] is False, cls.__name__
        for hint in typing.get_type_hints(cls).values():
            stack = [hint]
            while stack:
                t = stack.pop()
                stack.extend(typing.get_args(t))
                if isinstance(t, type) and t.__name__ in _record_types() and t.__name__ not in seen:
                    seen.add(t.__name__)
                    todo.append(t)
    assert set(defs) - {"Interval"} == seen - {"Report"}, "unused or missing $defs"


def test_sample_report_validates(schema, sample_analysis):
    doc = json.loads(render(sample_analysis.report, "json"))
    assert errors(schema, doc) == []
    assert doc["comparison"] is None and doc["gates"] == []


def test_cli_json_with_period_comparison_and_gates_validates(schema, tmp_path):
    r = run_cli("analyze", str(SAMPLE_EVENTS), "--sessions", str(SAMPLE_SESSIONS), "--segment", "device",
                "--period", "last-week", "--compare", "previous", "--fail-on", "conversion_drop > 50",
                "--fail-on", "reason:payment:share >= 0", "--json", "-", "-q")
    assert r.returncode == 1, r.stderr                     # the second rule always fires
    doc = json.loads(r.stdout)
    assert errors(schema, doc) == []
    assert doc["comparison"] is not None and len(doc["comparison"]["steps"]) == 4
    assert [g["fired"] for g in doc["gates"]] == [False, True]
    assert doc["input"]["period"] == {"start": "2026-11-16T00:00:00Z", "end": "2026-11-23T00:00:00Z"}
    assert {"rows_read", "rows_rejected"} <= set(doc["input"])


@pytest.mark.parametrize("hostile", [False, True])
def test_hand_built_reports_validate(schema, hostile):
    assert errors(schema, json.loads(render(make_report(hostile=hostile), "json"))) == []


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d.update(extra=1), ""),
    (lambda d: d.pop("gates"), ""),
    (lambda d: d.update(schema_version=2), "schema_version"),
    (lambda d: d["abandonment"]["reasons"][0].update(reason="weather"), "abandonment/reasons/0/reason"),
    (lambda d: d["input"].update(rows_read=-1), "input/rows_read"),
    (lambda d: d["funnel"]["steps"][1].update(ci95=[0.1]), "funnel/steps/1/ci95"),
    (lambda d: d["abandonment"].update(rate=1.5), "abandonment/rate"),
])
def test_schema_rejects_broken_documents(schema, mutate, where):
    doc = json.loads(render(make_report(), "json"))
    mutate(doc)
    found = errors(schema, doc)
    assert found and any(e.startswith(where + ":") for e in found), found
