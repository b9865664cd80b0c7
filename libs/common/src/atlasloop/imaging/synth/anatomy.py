"""Where things are in one synthetic patient (RAS mm: +x patient right, +y anterior, +z up).

The origin is the body's centre at the level of the renal hila. Positions and sizes follow adult
abdominal anatomy and vary per patient: body size, organ scale (about +-15%), position (about
+-8 mm), and an occasional absent gall bladder (cholecystectomy) or left kidney (nephrectomy).
Order matters: later target organs overwrite earlier ones where shapes meet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from atlasloop.imaging.synth.shapes import Ellipsoid, Tube

Shape = Ellipsoid | Tube


@dataclass
class Anatomy:
    """One patient: body outline, the target organs and the tissues around them."""

    body_radii: tuple[float, float]
    z_range: tuple[float, float]
    organs: list[tuple[str, list[Shape]]] = field(default_factory=list)  # target classes, in paint order
    tissues: list[tuple[str, list[Shape]]] = field(default_factory=list)  # non-target, painted first
    stomach_air: Ellipsoid | None = None
    bowel_air: list[Ellipsoid] = field(default_factory=list)


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    s = float(rng.uniform(0.9, 1.1))  # body size

    def jitter(c: tuple[float, float, float], mm: float = 8.0) -> tuple[float, float, float]:
        return tuple(float(v * s + rng.normal(0, mm / 2)) for v in c)  # type: ignore[return-value]

    def scale(r: tuple[float, float, float]) -> tuple[float, float, float]:
        k = s * float(rng.uniform(0.85, 1.15))
        return tuple(float(v * k) for v in r)  # type: ignore[return-value]

    def n(i: int) -> int:
        return int(rng.integers(0, 3)) if i < 0 else i

    a = Anatomy(
        body_radii=(float(155 * s * rng.uniform(0.92, 1.08)), float(118 * s * rng.uniform(0.9, 1.1))),
        z_range=(float(rng.uniform(-135, -95)), float(rng.uniform(115, 150))),
    )
    zlo, zhi = a.z_range
    # Surroundings: lungs at the top, muscles, spine, bowel and duodenum (stomach-like, not a target).
    a.tissues.append(("lung", [Ellipsoid(jitter((x, -25, 165)), scale((62, 72, 80)), 0.06, n(-1)) for x in (78, -78)]))
    a.tissues.append(
        (
            "muscle",
            [
                *(Tube((jitter((x, -62, zlo - 20)), jitter((x * 0.9, -60, 25))), 17 * s, 0.12, 2) for x in (40, -40)),
                *(Ellipsoid((x * s, -98 * s, 0), (30 * s, 19 * s, 400), 0.1, 0) for x in (36, -36)),
            ],
        )
    )
    a.tissues.append(("marrow", [Ellipsoid((0, -70 * s, 0), (19 * s, 17 * s, 400), 0.03, 1)]))
    a.tissues.append(("bone_shell", []))  # drawn from the marrow's outline by the renderer
    bowel: list[Ellipsoid | Tube] = []
    for _ in range(int(rng.integers(14, 22))):
        c = (float(rng.uniform(-90, 90)), float(rng.uniform(-20, 80)), float(rng.uniform(zlo + 10, -5)))
        bowel.append(Ellipsoid(c, scale((18, 16, 20)), 0.2, n(-1)))
        if rng.random() < 0.35:
            a.bowel_air.append(Ellipsoid((c[0], c[1] + 8, c[2]), (7, 5, 7), 0.2, 0))
    a.tissues.append(("bowel", bowel))
    a.tissues.append(
        (
            "duodenum",
            [
                Tube(
                    tuple(jitter(p, 5) for p in ((15, 38, 22), (42, 26, 8), (46, 8, -12), (22, 2, -26), (-8, 6, -22))),
                    12 * s,
                    0.12,
                    0,
                )
            ],
        )
    )
    # Target organs, in paint order.
    a.organs.append(
        (
            "liver",
            [
                Ellipsoid(jitter((58, 2, 58)), scale((72, 74, 60)), 0.08, 0),
                Ellipsoid(jitter((-6, 30, 66)), scale((42, 32, 28)), 0.1, 1),
            ],
        )
    )
    a.organs.append(("spleen", [Ellipsoid(jitter((-92, -32, 52)), scale((30, 52, 48)), 0.12, 2)]))
    a.organs.append(("kidney_right", [Ellipsoid(jitter((70, -55, -8)), scale((27, 23, 52)), 0.07, 1)]))
    if rng.random() > 0.03:
        a.organs.append(("kidney_left", [Ellipsoid(jitter((-70, -55, 4)), scale((27, 23, 52)), 0.07, 2)]))
    stomach_center = jitter((-48, 30, 48))
    a.organs.append(
        (
            "stomach",
            [
                Ellipsoid(stomach_center, scale((44, 34, 52)), 0.1, 0),
                Tube((stomach_center, jitter((-8, 44, 18)), jitter((22, 32, 10))), 17 * s, 0.12, 1),
            ],
        )
    )
    a.stomach_air = Ellipsoid(
        (stomach_center[0], stomach_center[1] + 12, stomach_center[2] + 34), (26 * s, 16 * s, 14 * s), 0.1, 2
    )
    if rng.random() > 0.10:
        a.organs.append(
            (
                "gall_bladder",
                [
                    Tube(
                        (jitter((48, 52, -8), 5), jitter((52, 36, 22), 5)),
                        float(14 * s * rng.uniform(0.8, 1.2)),
                        0.1,
                        2,
                    )
                ],
            )
        )
    a.organs.append(
        (
            "pancreas",
            [
                Tube(
                    tuple(jitter(p, 5) for p in ((32, 12, -8), (2, 14, 0), (-38, 4, 10), (-74, -18, 22))),
                    float(13 * s * rng.uniform(0.85, 1.15)),
                    0.18,
                    0,
                )
            ],
        )
    )
    a.organs.append(
        ("postcava", [Tube(tuple(jitter((22, -24, z), 4) for z in (zlo - 20, -40, 40, zhi + 20)), 12 * s, 0.06, 1)])
    )
    a.organs.append(
        ("aorta", [Tube(tuple(jitter((-14, -32, z), 4) for z in (zlo - 20, -40, 40, zhi + 20)), 11 * s, 0.04, 2)])
    )
    return a
