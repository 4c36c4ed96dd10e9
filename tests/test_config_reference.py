"""docs/config.md cannot drift: every key of the defaults is described, typed and on the page, and
the page is what the generator writes from them."""
import dataclasses
import re
from pathlib import Path

import pytest

from idstore.config import BASE_CONF, RUN_SECTIONS, ConfigError, load_config
from idstore.snapshot import Fingerprint
from idstore_tools import config_reference as ref
from idstore_tools.deploy.config import SECTIONS, TOOLING_DEFAULTS

LIB = Path(__file__).resolve().parents[1] / "lib" / "idstore"


def _keys(sections):
    return {section.name: [key.name for key in section.keys] for section in sections}


def test_every_key_of_both_defaults_files_has_a_description():
    undescribed = [key.dotted for section in ref.read_reference() for key in section.keys if not key.description]
    assert undescribed == [], "describe each key in a comment above it or after its value (conf/base.toml, top)"


def test_the_page_is_what_the_generator_writes():
    assert ref.PAGE.read_text() == ref.render_page(), "docs/config.md is stale: run make docs"


def test_each_defaults_file_holds_exactly_the_typed_keys():
    def typed(sections):
        return {name: [f.name for f in dataclasses.fields(cls) if f"{name}.{f.name}" not in ref.NOT_KEYS]
                for name, cls in sections.items()}

    assert _keys(ref.read_defaults(BASE_CONF)) == {**typed(RUN_SECTIONS), "spark": []}
    assert _keys(ref.read_defaults(TOOLING_DEFAULTS)) == typed(SECTIONS)


@pytest.mark.parametrize("dotted", sorted(ref.NOT_KEYS))
def test_a_field_that_is_not_a_key_is_refused_in_a_file(tmp_path, dotted):
    section, name = dotted.split(".")
    path = tmp_path / "c.toml"
    path.write_text(f'[{section}]\n{name} = "x"\n')
    with pytest.raises(ConfigError, match=dotted):
        load_config(str(path))


def test_the_reference_names_only_keys_that_exist():
    assert ref.reference_problems(ref.read_reference()) == []


def test_a_key_without_a_comment_and_a_rule_for_a_gone_key_are_reported(tmp_path, monkeypatch):
    base = tmp_path / "base.toml"
    base.write_text(BASE_CONF.read_text().replace('[aws]\n', '[aws]\nundescribed = 1\n', 1))
    monkeypatch.setitem(ref.RULES, "dynamodb.gone", "needs nothing")
    problems = ref.reference_problems(ref.read_reference(base))
    assert "aws.undescribed: no description (a comment above it or after its value)" in problems
    assert "RULES: dynamodb.gone is not a key of the defaults" in problems
    with pytest.raises(ValueError, match="aws.undescribed: no description"):
        ref.render_page(ref.read_reference(base))


def test_a_comment_naming_a_key_that_does_not_exist_is_reported(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text(BASE_CONF.read_text().replace("# of the table,", "# see dynamodb.colour; of the table,", 1))
    assert ref.reference_problems(ref.read_reference(base)) == [
        "aws.region's comment names dynamodb.colour, not a key"]


def test_the_comment_convention(tmp_path):
    path = tmp_path / "d.toml"
    path.write_text(
        "# the file's own comment\n\n"
        "[one]\n# what the section is for\n\n"
        "# a note for the reader of the file\n\n"
        "# the lines above a key\n# and the next\nkey = \"a # b\"  # and its inline comment\n"
        "plain = [\"x\"]\n"
        "[two]\n# the last section's comment\n"
    )
    one, two = ref.read_defaults(path)
    assert one.description == "what the section is for"
    assert one.keys[0] == ref.Key("one", "key", '"a # b"', "the lines above a key and the next and its inline comment")
    assert one.keys[1] == ref.Key("one", "plain", '["x"]', "")
    assert two.description == "the last section's comment" and two.keys == ()


def test_a_value_over_several_lines_is_refused(tmp_path):
    path = tmp_path / "d.toml"
    path.write_text('[one]\nlist = [\n  "a",\n]\n')
    with pytest.raises(ValueError, match="on one line"):
        ref.read_defaults(path)


def test_check_fails_on_a_stale_page_and_passes_once_written(tmp_path):
    page = tmp_path / "config.md"
    page.write_text("# old\n")
    assert ref.main(["--check", "--out", str(page)]) == 1
    assert ref.main(["--out", str(page)]) == 0
    assert ref.main(["--check", "--out", str(page)]) == 0


def test_the_fingerprint_keys_are_the_fingerprints_fields():
    fields = {f.name for f in dataclasses.fields(Fingerprint)} - {"format_version", "unknown"}
    assert set(ref.FINGERPRINT_KEYS) == fields


def test_a_key_the_page_says_no_job_reads_is_not_read_by_the_jobs():
    code = "\n".join(path.read_text() for path in LIB.rglob("*.py") if path.name != "config.py")
    for section in ref.read_defaults(BASE_CONF):
        for key in section.keys:
            said = bool(re.search(r"\b(sync|filter)\b", ref.read_by(key)))
            assert said == bool(re.search(rf"\.{key.name}\b", code)), key.dotted


@pytest.mark.parametrize("dotted, text", [
    ("source.partitions", ">= 1"),
    ("dynamodb.capacity_fraction", "0 to 1"),
    ("dynamodb.write_rate", ">= 0"),
    ("source.url", ""),
])
def test_ranges_are_what_the_load_accepts(dotted, text):
    section_name, name = dotted.split(".")
    section = next(s for s in ref.read_defaults(BASE_CONF) if s.name == section_name)
    assert ref.range_text(section, name) == text


def test_what_each_run_requires_comes_from_its_checks():
    required = ref.required_by()
    assert required["snapshot.path"] == ["sync", "filter with --ids snapshot"]
    assert required["dynamodb.table"] == ["sync", "filter with --ids dynamodb"]
    assert required["events.path"] == ["filter"]
    assert required["source.secret_id"] == required["source.url"] == ["sync", "filter with --ids source"]
