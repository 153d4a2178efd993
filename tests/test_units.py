import pytest

from tracker import units


@pytest.mark.parametrize(
    ("kwh", "text"),
    [(2.45432e-06, "2.45 mWh"), (0.00245, "2.45 Wh"), (0.9996, "1.00 kWh"), (1234.5, "1.23 MWh"), (0.0, "0 kWh")],
)
def test_energy_is_auto_scaled_to_three_significant_figures(kwh, text):
    assert units.energy(kwh) == text


@pytest.mark.parametrize(
    ("kg", "text"), [(0.0000000301, "0.0301 mg"), (0.0000301, "30.1 mg"), (0.0123, "12.3 g"), (2500.0, "2.50 t")]
)
def test_co2_is_auto_scaled(kg, text):
    assert units.co2(kg) == text


@pytest.mark.parametrize(
    ("s", "text"), [(3.9e4, "10.8 h"), (42.0, "42.0 s"), (90.0, "1.50 min"), (2 * 86400, "2.00 days")]
)
def test_duration_is_auto_scaled(s, text):
    assert units.duration(s) == text


def test_a_band_shares_the_unit_of_its_upper_end():
    assert units.energy_band(1.23e-06, 4.91e-06) == "1.23–4.91 mWh"
    assert units.co2_band(0.0009, 0.0021) == "0.900–2.10 g"


def test_missing_and_non_finite_values_read_unknown():
    assert units.energy(None) == units.co2(float("nan")) == units.number(None) == "unknown"


def test_a_long_line_wraps_under_its_value_keeping_each_number_with_its_unit():
    line = "  water   " + "71.1 mL (on-site 0.595 mL, 57.5 % off-site) " * 4
    wrapped = units.wrap(line.rstrip(), indent=10, width=40).splitlines()
    assert wrapped[0].startswith("  water   71.1 mL") and all(len(w) <= 40 for w in wrapped)
    assert all(w.startswith(" " * 10) and not w[10].isspace() for w in wrapped[1:])
    assert not any(w.rstrip().endswith(("71.1", "0.595", "57.5")) for w in wrapped)
    assert " ".join(w.strip() for w in wrapped) == line.strip()
    assert units.wrap("  logs    /a/very/long/path/" + "x" * 50, indent=10, width=40).count("\n") == 0
