"""Which fitted parameters the data identifies, and why each of the others stays nominal.

A fit moves every unknown, but only some are pinned by the data; the others drift along directions
the data cannot see, compensating one another. Written into robot.yaml, such values reproduce the
fitted excitation and mislead on any motion of another kind. So after the first fit every unknown
is judged, in this order, on the data's Jacobian at the optimum:

1. **motion**: a joint whose recorded positions move less than ``min_joint_rms_rad`` RMS says
   nothing about its own parameters (they stay nominal);
2. **sensitivity**: the parameter alone (every other one known) would not be pinned (below): a
   10 % change moves the predictions by less than the noise can tell over the samples;
3. **separability**: a parameter is pinned when its 95 % interval is within ``IDENTIFIED_WITHIN``
   of its size, or within ``REJECTS_WITHIN`` and clear of its nominal value (the data rules the
   nominal value out: fixing it there would cost more than leaving it at the estimate). Of the
   unpinned, the one with the widest interval is fixed at nominal and the intervals of the others
   recomputed without it, until every one left is pinned. Where parameters act alike (a joint's
   damping and its servo's kv) or only their ratios matter (kp, kv and armature of a joint without
   load), one of them is fixed and the others, refitted, carry what the data does say.

The kept unknowns are then refitted with the others at nominal; one that then is not pinned, has
not settled or runs into a bound is fixed too, and the rest refitted again (``identify.MAX_ROUNDS``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# A parameter is identified when the data pins it within this fraction of its size (95 %).
IDENTIFIED_WITHIN = 0.1
# ... or within this fraction when its interval excludes the nominal value.
REJECTS_WITHIN = 0.5
Z95 = 1.959964  # two-sided 95 % of a normal distribution


@dataclass(frozen=True)
class Judged:
    """What the data says of each unknown: kept (None) or the reason it stays nominal."""

    reasons: dict[str, str | None]
    partners: dict[str, str]  # an unknown fixed at nominal -> the kept one it could not be told from
    sensitivity_rad: dict[str, float]  # RMS change of the predictions for a 10 % change
    motion_rad: dict[str, float]  # per joint, RMS of its recorded positions about their mean


def joint_motion(positions: np.ndarray, joint_names: Sequence[str]) -> dict[str, float]:
    """Each joint's RMS motion about its mean position over the (T, J) recorded ``positions``."""
    rms = np.sqrt(np.mean((positions - positions.mean(axis=0)) ** 2, axis=0))
    return {name: float(r) for name, r in zip(joint_names, rms, strict=True)}


def relative(half_width: float, value: float, unit: float) -> float:
    """A 95 % half-width relative to the parameter's size (its value, or its unit where that is larger)."""
    return half_width / max(abs(value), unit)


def pinned(unknown, value: float, half_width: float) -> bool:
    """The data pins ``value``: within IDENTIFIED_WITHIN, or within REJECTS_WITHIN and clear of nominal."""
    width = relative(half_width, value, unknown.unit)
    return width <= IDENTIFIED_WITHIN or (
        width <= REJECTS_WITHIN and abs(value - unknown.nominal) > half_width
    )


def unpinned_reason(width: float) -> str:
    spread = "unbounded" if not math.isfinite(width) else f"±{100 * width:.0f} %"
    return (
        f"95 % interval {spread}: above {100 * IDENTIFIED_WITHIN:.0f} %, and above "
        f"{100 * REJECTS_WITHIN:.0f} % or around the nominal value"
    )


def judge(
    unknowns: Sequence,
    values: dict[str, float],
    jacobian: np.ndarray,
    sigma: float,
    motion: dict[str, float],
    min_joint_rms_rad: float,
    interval,
) -> Judged:
    """Each unknown kept (None) or its reason to stay nominal, from the data's Jacobian at the fit.

    ``jacobian`` is per unit of each unknown (``Unknown.unit``), ``sigma`` the (floored) RMS of the
    data's residual and ``interval(columns)`` the 95 % half-widths, in units, of the unknowns at
    ``columns`` with all others fixed."""
    rows = max(jacobian.shape[0], 1)
    norms = np.linalg.norm(jacobian, axis=0)
    reasons: dict[str, str | None] = {}
    sensitivity = {}
    for k, u in enumerate(unknowns):
        size = max(abs(values[u.name]), u.unit) / u.unit  # in units
        sensitivity[u.name] = float(0.1 * size * norms[k] / math.sqrt(rows))
        if u.joint is not None and motion[u.joint] < min_joint_rms_rad:
            reasons[u.name] = (
                f"{u.joint} moved {motion[u.joint]:.3g} rad rms "
                f"(below min_joint_rms_rad {min_joint_rms_rad:g})"
            )
        elif not pinned(u, values[u.name], Z95 * sigma / max(norms[k], 1e-300) * u.unit):
            threshold = Z95 * sigma / math.sqrt(rows)
            reasons[u.name] = (
                f"sensitivity below threshold: a 10 % change moves the predictions by "
                f"{sensitivity[u.name]:.2g} rad rms (needs {threshold:.2g} at a noise of {sigma:.2g} rad)"
            )
        else:
            reasons[u.name] = None
    partners = _separate(unknowns, values, jacobian, reasons, interval)
    return Judged(reasons=reasons, partners=partners, sensitivity_rad=sensitivity, motion_rad=motion)


def _separate(unknowns, values, jacobian, reasons, interval) -> dict[str, str]:
    """Fix, one at a time, the unpinned kept unknown with the widest relative interval until all kept
    are pinned; its reason names the kept unknown it is most correlated with, of its own joint and the
    delay where there are any (returned, per fixed one)."""
    partners: dict[str, str] = {}
    while True:
        kept = [k for k, u in enumerate(unknowns) if reasons[u.name] is None]
        if not kept:
            return partners
        half = interval(kept) * np.array([unknowns[k].unit for k in kept])
        names = [unknowns[k].name for k in kept]
        widths = [
            -1.0 if pinned(unknowns[k], values[n], h) else relative(h, values[n], unknowns[k].unit)
            for k, n, h in zip(kept, names, half, strict=True)
        ]
        worst = int(np.argmax(widths))
        if widths[worst] < 0:
            return partners
        k = kept[worst]
        near = [c for c in kept if c != k and unknowns[c].joint in (unknowns[k].joint, None)]
        partner = _most_correlated(jacobian, k, near or [c for c in kept if c != k])
        if partner is not None:
            partners[unknowns[k].name] = unknowns[partner].name
        reasons[unknowns[k].name] = _inseparable(
            unknowns[k], unknowns[partner] if partner is not None else None, widths[worst]
        )


def _most_correlated(jacobian: np.ndarray, k: int, others: Sequence[int]) -> int | None:
    """Of ``others``, the unknown whose estimate is most correlated with unknown ``k``'s (the
    covariance of the kept unknowns, pseudo-inverted where the data cannot see a direction)."""
    if not others:
        return None
    columns = [k, *others]
    covariance = np.linalg.pinv(jacobian[:, columns].T @ jacobian[:, columns])
    scale = np.sqrt(np.maximum(np.diag(covariance), 1e-300))
    correlation = np.abs(covariance[0, 1:]) / (scale[0] * scale[1:])
    return others[int(np.argmax(correlation))]


def _inseparable(unknown, partner, width: float) -> str:
    spread = "unbounded" if not math.isfinite(width) else f"±{100 * width:.0f} %"
    if partner is None:
        return unpinned_reason(width)
    if (
        unknown.joint is not None
        and unknown.joint == partner.joint
        and {unknown.kind, partner.kind}
        == {
            "damping",
            "kv",
        }
    ):
        return (
            f"acts as {partner.name} does (both -c*qdot): only their sum is identified; kept nominal, "
            f"the sum fitted in {partner.name}"
        )
    return (
        f"not separable from {partner.name} (95 % interval {spread} with both free, around the nominal "
        f"value or above {100 * REJECTS_WITHIN:.0f} %); kept nominal, {partner.name} fitted with it fixed"
    )
