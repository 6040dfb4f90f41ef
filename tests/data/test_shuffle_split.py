"""dlcli's numpy re-doing of train_test_split picks exactly the samples scikit-learn picks, so
splits (validation sets, the digits test split) are what they were when sklearn made them."""

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import train_test_split

from dlcli.data.shuffle_split import count_of_fraction, train_test_indices


@st.composite
def split_cases(draw):
    labels = draw(st.lists(st.integers(0, 6), min_size=2, max_size=300))
    n = len(labels)
    n_test = draw(st.integers(1, n - 1))
    counts = Counter(labels)
    stratify = (draw(st.booleans()) and min(counts.values()) >= 2 and n_test >= len(counts)
                and n - n_test >= len(counts))
    return labels, n_test, draw(st.integers(0, 2**32 - 1)), stratify


@settings(max_examples=300, deadline=None)
@given(split_cases())
def test_the_same_samples_as_sklearn_in_the_same_order(case):
    labels, n_test, seed, stratify = case
    expected = train_test_split(list(range(len(labels))), test_size=n_test, random_state=seed,
                                stratify=labels if stratify else None)
    assert list(train_test_indices(len(labels), n_test, seed, labels if stratify else None)) == expected


def test_a_fraction_becomes_sklearns_test_count():
    for n in (1797, 10, 7, 1001):
        for fraction in (0.2, 0.25, 0.5, 0.7):
            _, test = train_test_split(list(range(n)), test_size=fraction, random_state=0)
            assert count_of_fraction(n, fraction) == len(test)
