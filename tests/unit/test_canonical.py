"""The fast canonical-JSON path must give RFC 8785's bytes wherever it is taken."""

import math

import orjson
import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from indexer.events.canonical import CanonicalizationError, _fast_path_is_exact, canonical_json

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
)


def _containers(children):
    return st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)


json_values = st.recursive(json_scalars, _containers, max_leaves=30)


@given(json_values)
def test_canonical_json_equals_the_reference(value):
    assert canonical_json(value) == rfc8785.dumps(value)


@given(json_values)
def test_fast_path_is_only_taken_where_orjson_is_exact(value):
    if _fast_path_is_exact(value):
        assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == rfc8785.dumps(value)


def test_keys_outside_the_bmp_sort_by_utf16_code_units():
    value = {"\U0001f600": 1, "\uffff": 2}
    assert not _fast_path_is_exact(value)
    encoded = canonical_json(value)
    assert encoded == rfc8785.dumps(value)
    # U+1F600 is D83D DE00 in UTF-16, before U+FFFF; by code point it would come after
    assert encoded.index("\U0001f600".encode()) < encoded.index("\uffff".encode())
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) != encoded


@pytest.mark.parametrize("value", [2**53, -(2**53), math.nan, {"a": math.inf}])
def test_values_without_a_canonical_form_are_refused(value):
    with pytest.raises(CanonicalizationError):
        canonical_json(value)
