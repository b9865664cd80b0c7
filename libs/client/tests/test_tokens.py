"""The local stack's development tokens: one person per role, a second annotator, one per service."""

from __future__ import annotations

import json
import stat

import pytest

from atlasloop.client.tokens import SECOND_READER, TokenFile
from atlasloop.common.domain import Role
from atlasloop.common.service_map import SERVICES


def test_each_role_names_its_own_person_and_a_second_annotator_is_kept_apart(tmp_path):
    tokens = TokenFile(tmp_path).create()
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600
    specs = sorted(tokens.values())
    assert len(specs) == len(set(specs)) == len(Role) + 1 + len(SERVICES)
    file = TokenFile(tmp_path)
    by_role = file.by_role()
    assert {tokens[t] for t in by_role.values()} == {f"dev-{r}:{r}" for r in Role}
    second = file.token_of_person(SECOND_READER)
    assert tokens[second] == f"{SECOND_READER}:annotator" and second != by_role["annotator"]
    assert file.token_of_person("dev-annotator") == by_role["annotator"]
    with pytest.raises(KeyError, match="storage"):
        file.token_of_person("storage")  # a service is not a person
    assert TokenFile(tmp_path).create() == tokens  # made once and kept


def test_a_file_from_before_the_second_annotator_gains_it_and_keeps_its_tokens(tmp_path):
    old = {"a" * 32: "dev-annotator:annotator", "b" * 32: "dev-reviewer:reviewer"}
    (tmp_path / "tokens.json").write_text(json.dumps(old))
    tokens = TokenFile(tmp_path).create()
    assert tokens.items() >= old.items()
    assert f"{SECOND_READER}:annotator" in tokens.values()
    assert TokenFile(tmp_path).by_role()["annotator"] == "a" * 32
