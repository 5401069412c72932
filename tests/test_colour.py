"""Colour: policies own the hues, the time categories (in guest, in KVM, waiting on
mmu_lock, ...) have a palette of their own, and every pair of colours that can meet in
one figure stays apart for a reader with deuteranopia or protanopia (Machado, Oliveira and
Fernandes 2009, severity 1, applied in linear RGB; distance: CIE 1976 delta E in CIELAB)."""
import itertools

import numpy as np
import pytest

from workbench.present import plots

PROTANOPIA = np.array([[0.152286, 1.052583, -0.204868],
                       [0.114503, 0.786281, 0.099216],
                       [-0.003882, -0.048116, 1.051998]])
DEUTERANOPIA = np.array([[0.367322, 0.860646, -0.227968],
                         [0.280085, 0.672501, 0.047413],
                         [-0.011820, 0.042940, 0.968881]])
VISIONS = {"normal": np.eye(3), "protanopia": PROTANOPIA, "deuteranopia": DEUTERANOPIA}
# delta E 76 of about 2.3 is a just-noticeable difference; these are clear differences
POLICY_MIN, TIME_MIN, BETWEEN_MIN = 15.0, 12.0, 12.0


def lab(hex_colour: str, vision: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of an sRGB colour as seen with ``vision``."""
    srgb = np.array([int(hex_colour.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4)]) / 255
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    linear = np.clip(vision @ linear, 0, 1)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def distance(a: str, b: str, vision: str) -> float:
    return float(np.linalg.norm(lab(a, VISIONS[vision]) - lab(b, VISIONS[vision])))


def closest(pairs, vision):
    return min((distance(a, b, vision), a, b) for a, b in pairs)


def test_the_simulation_merges_what_it_should():
    """Red and green that differ plainly in normal vision collapse for deuteranopes."""
    red, green = "#E45756", "#54A24B"       # the old patch-09-21 and zero-tolerance
    assert distance(red, green, "normal") > 50
    assert distance(red, green, "deuteranopia") < 5


@pytest.mark.parametrize("vision", list(VISIONS))
def test_policy_colours_stay_apart(vision):
    pairs = itertools.combinations(set(plots.PRESET_COLORS.values()), 2)
    d, a, b = closest(pairs, vision)
    assert d >= POLICY_MIN, (vision, a, b, d)
    assert set(plots.PALETTE) == set(plots.PRESET_COLORS.values())


@pytest.mark.parametrize("vision", list(VISIONS))
def test_time_colours_stay_apart_and_never_look_like_a_policy(vision):
    times = list(plots.TIME_COLORS.values())
    assert len(set(times)) == len(times) and not set(times) & set(plots.PALETTE)
    d, a, b = closest(itertools.combinations(times, 2), vision)
    assert d >= TIME_MIN, (vision, a, b, d)
    d, a, b = closest(itertools.product(times, plots.PALETTE), vision)
    assert d >= BETWEEN_MIN, (vision, a, b, d)


def test_the_time_breakdown_takes_the_time_palette():
    import pandas as pd

    from workbench.present.plots.fairness import breakdown_traces
    vcpus = pd.DataFrame({"policy": ["upstream", "patch-09-21"], "role": ["converter"] * 2,
                          "vcpu": [0, 0], "useful_work": [3, 1], "guest_us": [5.0, 1.0],
                          "retry_us": [1.0, 4.0]})
    assert {b.marker.color for b in breakdown_traces(vcpus)} == {
        plots.TIME_COLORS["guest"], plots.TIME_COLORS["retry"]}
