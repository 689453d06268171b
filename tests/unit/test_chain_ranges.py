"""Adaptive eth_getLogs ranges: shrink on refusals, grow on success, bounded, density-aware."""

from hypothesis import given
from hypothesis import strategies as st

from indexer.chain.ranges import RangeSizer

outcomes = st.lists(
    st.one_of(st.just(None), st.tuples(st.integers(1, 5000), st.integers(0, 100_000))),
    max_size=60,
)


@given(maximum=st.integers(1, 5000), target=st.integers(1, 20_000), events=outcomes)
def test_the_size_stays_between_one_and_the_maximum(maximum, target, events):
    sizer = RangeSizer(maximum, target)
    for event in events:
        if event is None:
            before = sizer.size
            sizer = sizer.shrink()
            assert sizer.size == max(1, before // 2)
        else:
            blocks, logs = min(event[0], sizer.size), event[1]
            sizer = sizer.grow(blocks, logs)
            if logs > target:
                assert sizer.size <= max(1, blocks * target // logs)
        assert 1 <= sizer.size <= maximum


@given(maximum=st.integers(1, 5000), shrinks=st.integers(0, 20))
def test_quiet_ranges_grow_back_to_the_maximum(maximum, shrinks):
    sizer = RangeSizer(maximum)
    for _ in range(shrinks):
        sizer = sizer.shrink()
    for _ in range(60):
        sizer = sizer.grow(sizer.size, 0)
    assert sizer.size == maximum


def test_a_dense_range_sizes_the_next_one_to_the_target():
    sizer = RangeSizer(2000, target_logs=1000).grow(2000, 50_000)
    assert sizer.size == 40
    assert sizer.grow(40, 1000).size == 50
