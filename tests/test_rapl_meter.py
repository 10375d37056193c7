"""The RAPL CPU meter against a fake powercap tree (tests stand in for /sys/class/powercap)."""

from __future__ import annotations

import pytest

from ecosweep.errors import MeterError
from ecosweep.measure.meters.rapl import RaplMeter, find_domains, rapl_available


def zone(root, name, energy_uj, max_uj=1_000_000_000, label="package-0"):
    z = root / name
    z.mkdir()
    (z / "energy_uj").write_text(str(energy_uj))
    (z / "max_energy_range_uj").write_text(str(max_uj))
    (z / "name").write_text(label)
    return z


def test_package_energy_summed_over_packages_with_wraparound(tmp_path):
    p0 = zone(tmp_path, "intel-rapl:0", 5_000_000)
    p1 = zone(tmp_path, "intel-rapl:1", 999_000_000, label="package-1")
    zone(tmp_path, "intel-rapl:0:0", 0, label="core")  # a sub-zone: not counted again
    assert [d.name for d in find_domains(str(tmp_path))] == ["package-0", "package-1"]
    meter = RaplMeter(root=str(tmp_path))
    meter.begin_window()
    (p0 / "energy_uj").write_text(str(5_000_000 + 30_000_000))  # +30 J
    (p1 / "energy_uj").write_text(str(2_000_000))  # wrapped: +3 J
    r = meter.end_window()
    assert r.energy_source == "rapl"
    assert r.energy_j == pytest.approx(33.0)


def test_unreadable_rapl_is_reported_not_zero(tmp_path):
    assert not rapl_available(str(tmp_path))
    with pytest.raises(MeterError, match="no readable RAPL"):
        RaplMeter(root=str(tmp_path))


def test_meter_choice_on_cpu(monkeypatch, tmp_path):
    import ecosweep.measure.meters.rapl as rapl
    from ecosweep.config.schema import MeasurementConfig
    from ecosweep.measure.meters import NullMeter, make_meter

    monkeypatch.setattr(rapl, "POWERCAP_ROOT", str(tmp_path))  # a host whose powercap tree is empty
    meter, observes = make_meter(MeasurementConfig(meter="auto"), "cpu", [])
    assert isinstance(meter, NullMeter) and not observes
    with pytest.raises(MeterError, match="measurement.meter=cpu needs readable RAPL"):
        make_meter(MeasurementConfig(meter="cpu"), "cpu", [])
    with pytest.raises(MeterError, match="needs a CUDA device"):
        make_meter(MeasurementConfig(meter="nvml"), "cpu", [])
    zone(tmp_path, "intel-rapl:0", 0)  # now one readable package counter
    meter, _ = make_meter(MeasurementConfig(meter="cpu"), "cpu", [])
    assert meter.energy_source == "rapl"
