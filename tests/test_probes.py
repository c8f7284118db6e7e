"""Probe metrics (plaml_lab.probes) against scikit-learn's own scores."""

from __future__ import annotations

import numpy as np
import pytest

from plaml_lab.probes import nmi_ari


def test_nmi_ari_leave_out_unlabelled_items():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, 300)
    b = (a + rng.integers(0, 3, 300)) % 8
    labels = np.where(np.arange(300) % 5 == 0, -1, a)  # every fifth item unlabelled
    keep = labels >= 0
    s = nmi_ari(b, labels)
    assert s["nmi"] == pytest.approx(normalized_mutual_info_score(a[keep], b[keep]), abs=1e-12)
    assert s["ari"] == pytest.approx(adjusted_rand_score(a[keep], b[keep]), abs=1e-12)
    assert s["nmi"] != pytest.approx(normalized_mutual_info_score(labels, b), abs=1e-6)
    assert nmi_ari(b[:1], labels[1:2]) == {}
