"""A small table of hazardous gases and their Acute Exposure Guideline Levels (AEGLs).

AEGLs are the US EPA / National Advisory Committee (NAC/AEGL) thresholds for the general public,
reviewed by the National Research Council (NRC) in *Acute Exposure Guideline Levels for Selected
Airborne Chemicals* (volumes cited per row). For each of five exposure durations:

- **AEGL-1** — notable discomfort, irritation; transient and reversible;
- **AEGL-2** — irreversible or serious long-lasting effects, or an impaired ability to escape;
- **AEGL-3** — life-threatening effects or death.

Values are in ppm, final AEGLs as listed by the US EPA ("Acute Exposure Guideline Levels for
Airborne Chemicals", values table). The 60-minute column is the usual choice for a release of
about an hour. ppm are converted to mass concentration at 25 °C and 1 atm, where a mole of ideal
gas occupies 24.45 L: ``mg/m³ = ppm × M / 24.45`` (US EPA conversion convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from citytwin.errors import ValidationError

Duration = Literal["10min", "30min", "60min", "4h", "8h"]
DURATIONS: Final[tuple[Duration, ...]] = ("10min", "30min", "60min", "4h", "8h")
LEVELS: Final = ("AEGL-1", "AEGL-2", "AEGL-3")
#: Molar volume of an ideal gas at 25 °C and 101.325 kPa, litres per mole.
MOLAR_VOLUME_25C: Final = 24.45


@dataclass(frozen=True)
class Substance:
    """A gas with its molecular weight (g/mol) and AEGL-1/2/3 (ppm) per duration."""

    name: str
    formula: str
    cas: str
    molecular_weight: float
    aegl_ppm: dict[Duration, tuple[float, float, float]]
    source: str

    def thresholds_ppm(self, duration: Duration = "60min") -> tuple[float, float, float]:
        """AEGL-1, AEGL-2, AEGL-3 in ppm for ``duration``."""
        if duration not in self.aegl_ppm:
            raise ValidationError(
                f"duration {duration!r} for {self.name}: expected one of {', '.join(DURATIONS)}"
            )
        return self.aegl_ppm[duration]

    def thresholds_g_m3(self, duration: Duration = "60min") -> tuple[float, float, float]:
        """AEGL-1, AEGL-2, AEGL-3 in g/m³ (25 °C) for ``duration``."""
        one, two, three = self.thresholds_ppm(duration)
        return (
            ppm_to_g_m3(one, self.molecular_weight),
            ppm_to_g_m3(two, self.molecular_weight),
            ppm_to_g_m3(three, self.molecular_weight),
        )


def _aegl(
    one: tuple[float, ...], two: tuple[float, ...], three: tuple[float, ...]
) -> dict[Duration, tuple[float, float, float]]:
    return {
        d: (float(a), float(b), float(c))
        for d, a, b, c in zip(DURATIONS, one, two, three, strict=True)
    }


_NRC_V4: Final = "NRC (2004) AEGLs for Selected Airborne Chemicals, Vol. 4, doi:10.17226/10902"
SUBSTANCES: Final[dict[str, Substance]] = {
    s.name: s
    for s in (
        Substance(
            "chlorine", "Cl2", "7782-50-5", 70.906,
            _aegl((0.50,) * 5, (2.8, 2.8, 2.0, 1.0, 0.71), (50, 28, 20, 10, 7.1)),
            _NRC_V4,
        ),
        Substance(
            "ammonia", "NH3", "7664-41-7", 17.031,
            _aegl((30,) * 5, (220, 220, 160, 110, 110), (2700, 1600, 1100, 550, 390)),
            "NRC (2008) AEGLs for Selected Airborne Chemicals, Vol. 6, doi:10.17226/12018",
        ),
        Substance(
            "hydrogen sulfide", "H2S", "7783-06-4", 34.08,
            _aegl((0.75, 0.60, 0.51, 0.36, 0.33), (41, 32, 27, 20, 17), (76, 59, 50, 37, 31)),
            "NRC (2010) AEGLs for Selected Airborne Chemicals, Vol. 9",
        ),
        Substance(
            "sulfur dioxide", "SO2", "7446-09-5", 64.066,
            _aegl((0.20,) * 5, (0.75,) * 5, (42, 32, 27, 19, 16)),
            "NRC (2010) AEGLs for Selected Airborne Chemicals, Vol. 8, doi:10.17226/12770",
        ),
        Substance(
            "hydrogen chloride", "HCl", "7647-01-0", 36.461,
            _aegl((1.8,) * 5, (100, 43, 22, 11, 11), (620, 210, 100, 26, 26)),
            _NRC_V4,
        ),
        Substance(
            "hydrogen fluoride", "HF", "7664-39-3", 20.006,
            _aegl((1.0,) * 5, (95, 34, 24, 12, 12), (170, 62, 44, 22, 22)),
            _NRC_V4,
        ),
    )
}  # fmt: skip


def get_substance(name: str) -> Substance:
    """The table row for ``name`` (case-insensitive; formula or CAS number also accepted).

    Examples
    --------
    >>> chlorine = get_substance("Cl2")
    >>> chlorine.thresholds_ppm("60min")
    (0.5, 2.0, 20.0)
    >>> [round(v * 1000, 2) for v in chlorine.thresholds_g_m3()]   # mg/m³
    [1.45, 5.8, 58.0]
    """
    key = name.strip().lower()
    for substance in SUBSTANCES.values():
        if key in (substance.name, substance.formula.lower(), substance.cas):
            return substance
    raise ValidationError(
        f"unknown substance {name!r}; expected one of: {', '.join(sorted(SUBSTANCES))}"
    )


def ppm_to_g_m3(ppm: float, molecular_weight: float) -> float:
    """Volume mixing ratio (ppm) → mass concentration (g/m³) at 25 °C and 1 atm.

    Examples
    --------
    >>> round(ppm_to_g_m3(1.0, 24.45), 6)
    0.001
    """
    return ppm * molecular_weight / MOLAR_VOLUME_25C / 1000.0


def g_m3_to_ppm(concentration: float, molecular_weight: float) -> float:
    """Mass concentration (g/m³) → volume mixing ratio (ppm) at 25 °C and 1 atm.

    Examples
    --------
    >>> round(g_m3_to_ppm(0.001, 24.45), 6)
    1.0
    """
    return concentration * 1000.0 * MOLAR_VOLUME_25C / molecular_weight
