"""The two non-learned floors."""

from __future__ import annotations

import numpy as np

from vcfbert.baselines import longest_match, window_nearest


def test_longest_match_copies_the_longest_matching_haplotype():
    # query matches hap 0 on all 6 typed sites, hap 1 on 3 of them, hap 2 on none
    q = np.array([[0, 1, 1, 0, 1, 0]], dtype=np.int8)
    ref_slots = np.array([[0, 1, 1, 0, 1, 0], [0, 1, 1, 1, 0, 1], [1, 0, 0, 1, 0, 1]], np.int8)
    ref_sites = np.array([[1, 1], [0, 0], [0, 0]], np.int8)  # two untyped sites
    interval = np.array([3, 3])  # between typed sites 2 and 3
    p = longest_match(q, ref_slots, ref_sites, interval, k=2, scale=1.0)
    assert p[0, 0] > 0.95 and p[0, 1] > 0.95
    p_excl = longest_match(q, ref_slots, ref_sites, interval, k=2, scale=1.0,
                           exclude=[np.array([0])])
    assert p_excl[0, 0] < 0.05


def test_window_nearest_is_mean_of_nearest():
    q = np.array([[0, 1, -1]], dtype=np.int8)
    ref_slots = np.array([[0, 1, 1], [0, 1, 0], [1, 0, 0], [1, 0, 1]], np.int8)
    ref_sites = np.array([[1], [0], [1], [1]], np.int8)
    p = window_nearest(q, ref_slots, ref_sites, k=2)
    assert np.isclose(p[0, 0], 0.5)  # the two exact matches at observed sites: alleles 1, 0
