"""The observed-property vocabulary: every S-DoT, KMA, noise, AirKorea and TOPIS variable.

Each entry gives a stable key, English and Korean names, a definition URI (the CF standard name
where one exists, else a citytwin term), a UCUM unit and the physically valid range that QC's range
check uses. QC tuning (spike size, how long a value may stay flat) lives here too, so that a new
variable is added in one place.

Units: UCUM codes (https://ucum.org); the STA ``unitOfMeasurement.definition`` points at the OGC
definition server's UCUM register.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from citytwin.errors import ValidationError
from citytwin.model.sensing import ObservedProperty, UnitOfMeasurement

CF = "https://vocab.nerc.ac.uk/standard_name/"
CT = "https://citytwin.dev/def/observedProperty/"
UCUM_REGISTER = "http://www.opengis.net/def/uom/UCUM/0/"


@dataclass(frozen=True, slots=True)
class Unit:
    """A UCUM unit with a display symbol and name."""

    ucum: str
    symbol: str
    name: str

    def to_sta(self) -> UnitOfMeasurement:
        """The STA unitOfMeasurement object."""
        return UnitOfMeasurement(
            name=self.name, symbol=self.symbol, definition=UCUM_REGISTER + quote(self.ucum, safe="")
        )


UG_M3 = Unit("ug/m3", "µg/m³", "microgram per cubic metre")
CEL = Unit("Cel", "°C", "degree Celsius")
PERCENT = Unit("%", "%", "percent")
DEG = Unit("deg", "°", "degree (angle)")
M_S = Unit("m/s", "m/s", "metre per second")
LUX = Unit("lx", "lx", "lux")
UV = Unit("{UV_index}", "UVI", "UV index")
DB = Unit("dB[SPL]", "dB", "decibel (sound pressure level, A-weighted)")
MM_S = Unit("mm/s", "mm/s", "millimetre per second")
G0 = Unit("[g]", "g", "standard acceleration of free fall")
PPM = Unit("[ppm]", "ppm", "part per million")
COUNT = Unit("{count}", "count", "count")
MM = Unit("mm", "mm", "millimetre")
HPA = Unit("hPa", "hPa", "hectopascal")
MJ_M2 = Unit("MJ/m2", "MJ/m²", "megajoule per square metre")
HOUR = Unit("h", "h", "hour")
CM = Unit("cm", "cm", "centimetre")
METRE = Unit("m", "m", "metre")
TENTHS = Unit("{tenths}", "1/10", "tenths of sky covered")
KM_H = Unit("km/h", "km/h", "kilometre per hour")


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """One observed property and its QC parameters.

    ``spike``: a jump (absolute, in the unit) no real signal makes between neighbouring readings.
    ``stuck_minutes``: an unchanged value longer than this is a flat-lined sensor (None: a constant
    value is normal, e.g. rain = 0).
    """

    key: str
    name: str
    name_ko: str
    definition: str
    unit: Unit
    valid_min: float
    valid_max: float
    spike: float | None = None
    stuck_minutes: float | None = None
    smooth: bool = False  # varies smoothly across a city: a sensor far from the others drifts
    description: str = ""

    def to_sta(self) -> ObservedProperty:
        """The STA ObservedProperty entity (id derived from the key)."""
        return ObservedProperty(
            key=self.key,
            name=self.name,
            definition=self.definition,
            description=self.description or f"{self.name} ({self.name_ko})",
            properties={
                "key": self.key,
                "name_ko": self.name_ko,
                "ucum": self.unit.ucum,
                "validRange": [self.valid_min, self.valid_max],
            },
        )


_SMOOTH = {
    "pm25",
    "pm10",
    "pm25_corrected",
    "pm10_corrected",
    "air_temperature",
    "relative_humidity",
    "air_pressure",
    "sea_level_pressure",
    "dew_point_temperature",
}


def _p(
    key: str,
    name: str,
    ko: str,
    definition: str,
    unit: Unit,
    lo: float,
    hi: float,
    spike: float | None = None,
    stuck: float | None = 120.0,
) -> PropertySpec:
    return PropertySpec(key, name, ko, definition, unit, lo, hi, spike, stuck, key in _SMOOTH)


_VIB = [(f"vibration_{a}", f"Vibration velocity {a}", f"진동({a})") for a in "xyz"] + [
    (f"vibration_{a}_max", f"Maximum vibration velocity {a}", f"진동({a}) 최대") for a in "xyz"
]
_ACC = [
    (f"acceleration_{a}", f"Vibration acceleration {a}", f"진동({a}) 가속도") for a in "xyz"
] + [
    (f"acceleration_{a}_max", f"Maximum vibration acceleration {a}", f"진동({a}) 최대 가속도")
    for a in "xyz"
]

PROPERTIES: tuple[PropertySpec, ...] = (
    _p(
        "pm25",
        "PM2.5 mass concentration",
        "초미세먼지",
        CF + "mass_concentration_of_pm2p5_ambient_aerosol_particles_in_air/",
        UG_M3,
        0,
        1500,
        150,
    ),
    _p(
        "pm10",
        "PM10 mass concentration",
        "미세먼지",
        CF + "mass_concentration_of_pm10_ambient_aerosol_particles_in_air/",
        UG_M3,
        0,
        1500,
        250,
    ),
    _p(
        "pm25_corrected",
        "PM2.5 mass concentration, corrected to the national network",
        "초미세먼지 보정",
        CT + "pm25_corrected",
        UG_M3,
        0,
        1500,
        150,
    ),
    _p(
        "pm10_corrected",
        "PM10 mass concentration, corrected to the national network",
        "미세먼지 보정",
        CT + "pm10_corrected",
        UG_M3,
        0,
        1500,
        250,
    ),
    _p("air_temperature", "Air temperature", "기온", CF + "air_temperature/", CEL, -40, 50, 8),
    _p(
        "relative_humidity",
        "Relative humidity",
        "상대습도",
        CF + "relative_humidity/",
        PERCENT,
        0,
        100,
        40,
    ),
    _p(
        "wind_direction",
        "Wind from direction",
        "풍향",
        CF + "wind_from_direction/",
        DEG,
        0,
        360,
        None,
        None,
    ),
    _p("wind_speed", "Wind speed", "풍속", CF + "wind_speed/", M_S, 0, 75, 25, None),
    _p(
        "gust_direction",
        "Wind gust from direction",
        "돌풍 풍향",
        CF + "wind_gust_from_direction/",
        DEG,
        0,
        360,
        None,
        None,
    ),
    _p(
        "gust_speed",
        "Wind speed of gust",
        "돌풍 풍속",
        CF + "wind_speed_of_gust/",
        M_S,
        0,
        100,
        40,
        None,
    ),
    _p("illuminance", "Illuminance", "조도", CT + "illuminance", LUX, 0, 150000, None, None),
    _p("uv_index", "Ultraviolet index", "자외선", CF + "ultraviolet_index/", UV, 0, 20, None, None),
    _p(
        "noise",
        "Sound pressure level (A-weighted, equivalent)",
        "소음",
        CT + "sound_pressure_level_a_weighted",
        DB,
        20,
        140,
        None,
        240,
    ),
    *(_p(k, n, ko, CT + k, MM_S, 0, 16, None, None) for k, n, ko in _VIB),
    *(_p(k, n, ko, CT + k, G0, 0, 16, None, None) for k, n, ko in _ACC),
    _p(
        "black_globe_temperature",
        "Black-globe temperature",
        "흑구 온도",
        CT + "black_globe_temperature",
        CEL,
        -40,
        80,
        15,
    ),
    _p(
        "no2",
        "NO2 mole fraction",
        "이산화질소",
        CF + "mole_fraction_of_nitrogen_dioxide_in_air/",
        PPM,
        0,
        2,
        0.5,
    ),
    _p(
        "co",
        "CO mole fraction",
        "일산화탄소",
        CF + "mole_fraction_of_carbon_monoxide_in_air/",
        PPM,
        0,
        50,
        10,
    ),
    _p(
        "so2",
        "SO2 mole fraction",
        "아황산가스",
        CF + "mole_fraction_of_sulfur_dioxide_in_air/",
        PPM,
        0,
        2,
        0.5,
    ),
    _p(
        "nh3",
        "NH3 mole fraction",
        "암모니아",
        CF + "mole_fraction_of_ammonia_in_air/",
        PPM,
        0,
        50,
        10,
    ),
    _p(
        "h2s",
        "H2S mole fraction",
        "황화수소",
        CT + "mole_fraction_of_hydrogen_sulfide_in_air",
        PPM,
        0,
        10,
        2,
    ),
    _p("o3", "O3 mole fraction", "오존", CF + "mole_fraction_of_ozone_in_air/", PPM, 0, 1, 0.3),
    _p(
        "visitor_count",
        "Visitor count",
        "방문자수",
        CT + "visitor_count",
        COUNT,
        0,
        1e6,
        None,
        None,
    ),
    _p(
        "precipitation",
        "Precipitation amount",
        "강수량",
        CF + "precipitation_amount/",
        MM,
        0,
        300,
        None,
        None,
    ),
    _p(
        "air_pressure",
        "Air pressure at station level",
        "현지기압",
        CF + "surface_air_pressure/",
        HPA,
        500,
        1100,
        15,
    ),
    _p(
        "sea_level_pressure",
        "Air pressure at mean sea level",
        "해면기압",
        CF + "air_pressure_at_mean_sea_level/",
        HPA,
        870,
        1090,
        15,
    ),
    _p(
        "dew_point_temperature",
        "Dew-point temperature",
        "이슬점온도",
        CF + "dew_point_temperature/",
        CEL,
        -60,
        40,
        10,
    ),
    _p(
        "vapour_pressure",
        "Water vapour partial pressure",
        "증기압",
        CF + "water_vapor_partial_pressure_in_air/",
        HPA,
        0,
        80,
        15,
    ),
    _p(
        "solar_radiation",
        "Global solar irradiation (hourly)",
        "일사",
        CF + "integral_wrt_time_of_surface_downwelling_shortwave_flux_in_air/",
        MJ_M2,
        0,
        5,
        None,
        None,
    ),
    _p(
        "sunshine_duration",
        "Sunshine duration (hourly)",
        "일조",
        CF + "duration_of_sunshine/",
        HOUR,
        0,
        1,
        None,
        None,
    ),
    _p("snow_depth", "Snow depth", "적설", CF + "surface_snow_thickness/", CM, 0, 300, None, None),
    _p(
        "cloud_cover",
        "Total cloud cover",
        "전운량",
        CF + "cloud_area_fraction/",
        TENTHS,
        0,
        10,
        None,
        None,
    ),
    _p(
        "visibility",
        "Visibility in air",
        "시정",
        CF + "visibility_in_air/",
        METRE,
        0,
        100000,
        None,
        None,
    ),
    _p(
        "ground_temperature",
        "Ground surface temperature",
        "지면온도",
        CF + "surface_temperature/",
        CEL,
        -40,
        75,
        15,
    ),
    _p(
        "link_speed",
        "Road link travel speed",
        "링크 통행속도",
        CT + "link_speed",
        KM_H,
        0,
        200,
        None,
        None,
    ),
)

_BY_KEY = {spec.key: spec for spec in PROPERTIES}


def get_property(key: str) -> PropertySpec:
    """The property with this key; the error lists the known keys.

    >>> get_property("air_temperature").unit.ucum
    'Cel'
    """
    try:
        return _BY_KEY[key]
    except KeyError:
        raise ValidationError(
            f"unknown observed property {key!r}; known: {', '.join(sorted(_BY_KEY))}"
        ) from None


def property_keys() -> list[str]:
    """All vocabulary keys, in vocabulary order."""
    return [spec.key for spec in PROPERTIES]
