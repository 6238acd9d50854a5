"""The JSON Schema: draft-07, one definition per action (matching the registry), documented
keys, strings for numbers-as-text, and the example flows valid for an editor too."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from flowengine.flow.actions import ACTIONS
from flowengine.flow.loader import load_yaml
from flowengine.flow.schema import flow_schema

ROOT = Path(__file__).parent.parent
SCHEMA_PATH = ROOT / "schemas" / "flow.schema.json"


@pytest.fixture(scope="module")
def schema():
    return json.loads(SCHEMA_PATH.read_text())


def test_schema_is_draft_07_with_a_versioned_id(schema):
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["$id"].endswith("/flow-v1.json")
    jsonschema.Draft7Validator.check_schema(schema)
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft7Validator


def test_the_package_reads_the_same_schema(schema):
    assert flow_schema() == schema


def test_no_keywords_newer_than_draft_07(schema):
    text = SCHEMA_PATH.read_text()
    for keyword in ("$defs", "unevaluatedProperties", "prefixItems", "dependentRequired",
                    "$dynamicRef", "dependentSchemas"):
        assert f'"{keyword}"' not in text


def test_one_definition_per_action_matching_the_registry(schema):
    step = schema["definitions"]["step"]
    defined = {k.removeprefix("action.") for k in schema["definitions"] if k.startswith("action.")}
    assert defined == set(ACTIONS)
    for name in ACTIONS:
        assert step["properties"][name] == {"$ref": f"#/definitions/action.{name}"}
    assert [b["required"] for b in step["oneOf"]] == [[name] for name in step["properties"]
                                                      if name in ACTIONS]


def test_keys_are_documented(schema):
    for key, prop in schema["properties"].items():
        assert prop.get("title") and prop.get("description"), key
    for name in ACTIONS:
        action = schema["definitions"][f"action.{name}"]
        assert action.get("title") == name and action.get("description"), name
        for param, prop in action.get("properties", {}).items():
            assert prop.get("title"), f"{name}.{param}"
    record = schema["definitions"]["action.record"]["properties"]
    assert set(record) == {"direction", "format", "stereo", "initial_timeout",
                           "end_silence_timeout", "terminators", "beep", "input_sensitivity"}
    assert all("default" in prop for prop in record.values())


def test_numbers_as_text_are_strings_and_templates_are_bounded(schema):
    d = schema["definitions"]
    assert schema["properties"]["match"]["properties"]["to"]["type"] == "string"
    assert schema["properties"]["match"]["properties"]["from"]["type"] == "string"
    assert d["action.record"]["properties"]["terminators"]["type"] == "string"
    assert d["text"]["maxLength"] == 4096
    assert d["value"]["maxLength"] == 4096


@pytest.mark.parametrize("path", sorted((ROOT / "flows").glob("*.yaml")), ids=lambda p: p.name)
def test_example_flows_are_valid_for_a_plain_draft_07_validator(path, schema):
    data = load_yaml(path.read_text(), str(path)).data
    assert list(jsonschema.Draft7Validator(schema).iter_errors(data)) == []


# -- the schema is generated from the action specs -----------------------------------------

GEN_SCHEMA = ROOT / "tools" / "gen_schema.py"


def test_committed_schema_is_the_generators_output():
    # Edit an action's spec (flowengine/flow/actions/), then run python tools/gen_schema.py.
    render = runpy.run_path(str(GEN_SCHEMA))["render"]
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render()


def test_gen_schema_check_mode_accepts_the_committed_file():
    run = subprocess.run([sys.executable, str(GEN_SCHEMA), "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert (run.returncode, run.stderr) == (0, "")


def test_each_action_definition_is_its_specs_fragment(schema):
    for name, spec in ACTIONS.items():
        assert schema["definitions"][f"action.{name}"] == dict(spec.schema), name


def test_every_outcome_an_edge_can_name_is_described(schema):
    described = schema["definitions"]["outcomes"]["properties"]
    for name, spec in ACTIONS.items():
        for outcome in spec.outcomes:
            if outcome == "next":
                continue
            assert outcome in described, f"{name}: {outcome}"
            if outcome not in ("error", "hangup", "timeout"):
                assert f"{name}: {spec.outcome_docs[outcome]}" in described[outcome]["description"]


def test_a_new_spec_appears_in_the_generated_schema():
    # What tools/gen_schema.py writes follows the specs it is given.
    from flowengine.flow.actions import ActionSpec
    from flowengine.flow.language import build_schema

    extra = ActionSpec(name="wave", outcomes=("waved", "error", "hangup"), result_fields=(),
                       runner="nowhere:run_wave", summary="Wave.",
                       outcome_docs={"waved": "the caller saw it."},
                       schema={"title": "wave", "description": "Wave.", "type": "null"})
    built = build_schema([*ACTIONS.values(), extra])
    assert built["definitions"]["action.wave"]["title"] == "wave"
    assert {"required": ["wave"]} in built["definitions"]["step"]["oneOf"]
    assert built["definitions"]["outcomes"]["properties"]["waved"]["description"] == (
        "wave: the caller saw it.")
    jsonschema.Draft7Validator.check_schema(built)
