"""Device registry: loading, normalisation, lookups, immutability."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pytest

from connectors.sources.devices import DeviceInfo, DeviceRegistry, normalize_mac

CSV = Path(__file__).resolve().parents[1] / "fixtures" / "isapi" / "devices.csv"


class LocatedDevice(Protocol):
    lat: float | None
    lon: float | None
    admin_code: str | None
    address: str | None
    name: str


class DeviceLookup(Protocol):
    def lookup(self, device_id: str) -> LocatedDevice | None: ...


@pytest.fixture(scope="module")
def reg() -> DeviceRegistry:
    return DeviceRegistry.from_csv(CSV)


def test_loads_fixture_csv(reg: DeviceRegistry) -> None:
    assert len(reg) == 5
    dev = reg.lookup("WC-HY-0017")
    assert dev == DeviceInfo("WC-HY-0017", "camera_huiyan", "岷江河堤慧眼17号", "10.51.32.17", "44:19:b6:0a:11:02",
                             "a1b2c3d4-0000-4000-8000-000000000017", 31.4788, 103.5912, "513221100", "威州镇岷江河堤")
    assert dev.is_camera and not reg.lookup("WC-DOOR-0002").is_camera


@pytest.mark.parametrize("mac", ["44:19:B6:0A:11:2A", "44-19-b6-0a-11-2a", "4419b60a112a", "4419.B60A.112A"])
def test_mac_normalisation(reg: DeviceRegistry, mac: str) -> None:
    assert normalize_mac(mac) == "44:19:b6:0a:11:2a"
    assert reg.by_mac(mac).device_id == "WC-XL-0042"


def test_registry_normalises_its_own_csv_notation(reg: DeviceRegistry) -> None:
    assert reg.lookup("WC-TW-0003").mac == "c0:56:e3:00:00:03"   # written as C056.E300.0003
    assert reg.lookup("WC-XL-0042").mac == "44:19:b6:0a:11:2a"   # written as 44-19-B6-0A-11-2A


def test_lookups(reg: DeviceRegistry) -> None:
    assert reg.by_ip("10.51.32.3").device_id == "WC-TW-0003"
    assert reg.by_ip(" 10.51.32.3 ").device_id == "WC-TW-0003"
    assert reg.by_ip("not-an-ip") is None and reg.by_mac("zz") is None
    assert reg.by_uuid("A1B2C3D4-0000-4000-8000-000000000042").device_id == "WC-XL-0042"
    assert reg.lookup("nope") is None
    assert "WC-HY-0017" in reg and "x" not in reg


def test_resolve_priority(reg: DeviceRegistry) -> None:
    # MAC beats IP beats UUID beats device_id
    assert reg.resolve(mac="44:19:b6:0a:11:02", ip="10.51.32.42").device_id == "WC-HY-0017"
    assert reg.resolve(mac="00:00:00:00:00:01", ip="10.51.32.42").device_id == "WC-XL-0042"
    assert reg.resolve(ip="10.9.9.9", uuid="door-uuid-0002").device_id == "WC-DOOR-0002"
    assert reg.resolve(device_id="WC-TW-0003").device_id == "WC-TW-0003"
    assert reg.resolve() is None


def test_immutable(reg: DeviceRegistry) -> None:
    with pytest.raises(AttributeError):
        reg._by_id = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        reg._by_id["evil"] = None  # type: ignore[index]
    with pytest.raises(Exception):
        reg.lookup("WC-HY-0017").lat = 0.0  # type: ignore[misc]


def test_satisfies_domain_protocol(reg: DeviceRegistry) -> None:
    lookup: DeviceLookup = reg
    dev = lookup.lookup("51322110001190000011")
    assert (dev.lat, dev.lon, dev.admin_code, dev.address, dev.name) == (
        31.482, 103.588, "513221100", "威州镇金竹苑小区东门", "金竹苑东门门禁")


def base_row(**over: str) -> dict[str, str]:
    row = {"device_id": "D1", "kind": "door", "name": "n", "ip": "10.0.0.1", "mac": "", "uuid": "", "lat": "31",
           "lon": "103", "admin_code": "513221", "address": ""}
    row.update(over)
    return row


@pytest.mark.parametrize(("rows", "message"), [
    ([base_row(kind="printer")], "kind 'printer'"),
    ([base_row(ip="10.0.0.300")], "is not an IP address"),
    ([base_row(mac="44:19")], "is not a MAC address"),
    ([base_row(lat="north")], "lat 'north' is not a number"),
    ([base_row(lon="200")], "out of range"),
    ([base_row(admin_code="51")], "admin_code"),
    ([base_row(device_id="")], "missing device_id"),
    ([base_row(), base_row()], "duplicate device_id"),
    ([base_row(), base_row(device_id="D2")], "duplicate ip"),
])
def test_invalid_rows_fail_loudly(rows: list[dict[str, str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeviceRegistry.from_rows(rows)


def test_csv_missing_columns() -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        DeviceRegistry.from_csv_text("device_id,kind\nD1,door\n")


def test_optional_fields_empty() -> None:
    reg = DeviceRegistry.from_rows([base_row(ip="", lat="", lon="", admin_code="", name="")])
    dev = reg.lookup("D1")
    assert dev.ip is None and dev.lat is None and dev.admin_code is None and dev.name == "D1"
