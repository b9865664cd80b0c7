"""Case ids and other names from callers are validated before they reach a key."""

from __future__ import annotations

import pytest

from atlasloop.common import ids as keys
from atlasloop.common.errors import InvalidInput


@pytest.mark.parametrize("case_id", ["case-1", "A", "abdomen_atlas.0001", "x" * 64])
def test_good_case_ids(case_id):
    assert keys.validate_case_id(case_id) == case_id


@pytest.mark.parametrize(
    "case_id", ["", "../etc", "a/b", "a\\b", "..", "a..b", ".hidden", "-x", "x" * 65, "case 1", "cäse", "a\x00b"]
)
def test_bad_case_ids(case_id):
    with pytest.raises(InvalidInput, match="not valid"):
        keys.validate_case_id(case_id)


def test_generated_ids_are_valid_and_versions_sort_by_time():
    assert keys.validate_case_id(keys.new_case_id())
    assert keys.validate_upload_id(keys.new_upload_id())
    first, second = keys.new_version(), keys.new_version()
    assert keys.validate_version(first) and first < second
    with pytest.raises(InvalidInput):
        keys.validate_upload_id("staging/../../x")
