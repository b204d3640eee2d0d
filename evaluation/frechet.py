"""Frechet distance between two feature sets (the FID formula on the game classifier's features):
|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), with the matrix square root through symmetric eigendecompositions
(no scipy at run time): tr((S1 S2)^1/2) = sum of sqrt of the eigenvalues of S1^1/2 S2 S1^1/2.

Like FID it is biased by the sample count, so rows of one table must use the same number of images per class.
"""
from __future__ import annotations

import numpy as np


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """a [N, F], b [M, F] (N, M >= 2)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet: need two [N>=2, F] feature sets of one width (got {a.shape} and {b.shape})")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    r = _sqrt_psd(s1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross)


def per_class_frechet(feats: np.ndarray, labels: np.ndarray, ref_feats: np.ndarray, ref_labels: np.ndarray,
                      n_classes: int) -> list[float]:
    return [frechet_distance(feats[labels == c], ref_feats[ref_labels == c]) for c in range(n_classes)]
