"""Live-view composition: real key frame beside the predicted one, per camera, labelled (pure numpy/cv2)."""
from __future__ import annotations

from typing import Mapping

import cv2
import numpy as np

_PAD = 4
_LABEL_H = 18


def _label(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((_LABEL_H, img.shape[1], 3), 24, np.uint8)
    cv2.putText(bar, text, (4, _LABEL_H - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (235, 235, 235), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def compose_live_view(real: Mapping[str, np.ndarray], predicted: Mapping[str, np.ndarray] | None,
                      caption: str = "") -> np.ndarray:
    """One RGB image: a row per camera with [real | predicted] (predicted shown as 'n/a' when absent)."""
    rows = []
    for name, img in real.items():
        pred = predicted.get(name) if predicted else None
        if pred is None:
            pred = np.zeros_like(img)
            cv2.putText(pred, "n/a", (4, img.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (200, 60, 60), 1)
        elif pred.shape != img.shape:
            pred = cv2.resize(pred, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        left, right = _label(img, f"{name} real"), _label(pred, f"{name} predicted")
        gap = np.zeros((left.shape[0], _PAD, 3), np.uint8)
        rows.append(np.hstack([left, gap, right]))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, _PAD), (0, width - r.shape[1]), (0, 0))) for r in rows]
    view = np.vstack(rows)
    return _label(view, caption) if caption else view
