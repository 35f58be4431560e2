"""The unbiased pass@k estimator (Chen et al. 2021) against hand-computed values and its edge cases."""

from math import comb

import numpy as np
import pytest

from tasks.codegen.passk import estimate_pass_at_k, pass_at_k


@pytest.mark.parametrize("n, c, k, expected", [
    (10, 3, 1, 0.3),                       # pass@1 is the fraction correct
    (5, 2, 2, 1 - 3 / 10),                 # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (10, 1, 10, 1.0),                      # k = n with one correct: always drawn
    (20, 5, 10, 1 - comb(15, 10) / comb(20, 10)),
    (4, 0, 2, 0.0),                        # nothing correct
    (4, 4, 2, 1.0),                        # everything correct
    (4, 3, 2, 1.0),                        # n - c < k: every draw holds a correct one
])
def test_hand_computed_values(n, c, k, expected):
    assert estimate_pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_stable_for_large_n_where_binomials_overflow_floats():
    value = estimate_pass_at_k(2000, 7, 100)
    assert value == pytest.approx(1 - comb(1993, 100) / comb(2000, 100), rel=1e-9)


def test_arrays_per_problem_and_scalar_n():
    got = pass_at_k(np.array([10, 10, 5]), np.array([0, 10, 2]), 2)
    np.testing.assert_allclose(got, [0.0, 1.0, 0.7])
    np.testing.assert_allclose(pass_at_k(10, [3, 0], 1), [0.3, 0.0])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="at least 10 samples"):
        estimate_pass_at_k(5, 1, 10)
    with pytest.raises(ValueError):
        estimate_pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        estimate_pass_at_k(5, 1, 0)
    with pytest.raises(ValueError, match="2 sample counts for 3"):
        pass_at_k([5, 5], [1, 2, 3], 1)
