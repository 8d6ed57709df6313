"""Hypothesis strategies the consensus's tests share."""

from __future__ import annotations

from hypothesis import strategies as st

# Any JSON value an edge could hand a strict reader.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
