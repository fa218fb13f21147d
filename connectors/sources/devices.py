"""Device registry: configured cameras and door controllers with their location (contracts.md).

CSV columns: `device_id,kind,name,ip,mac,uuid,lat,lon,admin_code,address`. The registry is
immutable once loaded; nothing a device sends can change it. It satisfies the domain protocol
`lookup(device_id) -> object with lat, lon, admin_code, address, name`.
"""
from __future__ import annotations

import csv
import io
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from os import PathLike
from types import MappingProxyType
from typing import Any, Final

DEVICE_KINDS: Final = frozenset({"camera_tianwang", "camera_xueliang", "camera_huiyan", "door"})
CSV_COLUMNS: Final = ("device_id", "kind", "name", "ip", "mac", "uuid", "lat", "lon", "admin_code", "address")

_HEX12 = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One configured device; lat/lon are WGS-84, admin_code 6–12 digits."""

    device_id: str
    kind: str
    name: str
    ip: str | None
    mac: str | None
    uuid: str | None
    lat: float | None
    lon: float | None
    admin_code: str | None
    address: str | None

    @property
    def is_camera(self) -> bool:
        """True for every camera kind (not door controllers)."""
        return self.kind.startswith("camera_")


def normalize_mac(value: str | None) -> str | None:
    """MAC as lower-case colon-separated pairs (`44:19:b6:0a:11:02`); accepts `-`, `.`, `:` or none.

    Returns None for anything that is not 12 hex digits."""
    if not value:
        return None
    digits = re.sub(r"[\s:\-.]", "", str(value)).lower()
    if not _HEX12.fullmatch(digits):
        return None
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def normalize_ip(value: str | None) -> str | None:
    """Canonical text of an IPv4/IPv6 address, None if it is not one."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        return None


def normalize_uuid(value: str | None) -> str | None:
    """UUID / device serial as lower-case stripped text (braces removed), None when empty."""
    if not value:
        return None
    text = str(value).strip().strip("{}").lower()
    return text or None


class DeviceRegistry:
    """Read-only index of devices by device_id, IP, MAC and UUID.

    Build with `from_csv(path)` or `from_rows(rows)`; duplicate ids/IPs/MACs/UUIDs and invalid
    rows raise ValueError at load time (a broken registry must not start)."""

    __slots__ = ("_by_id", "_by_ip", "_by_mac", "_by_uuid")

    def __init__(self, devices: Iterable[DeviceInfo] = ()) -> None:
        by_id: dict[str, DeviceInfo] = {}
        by_ip: dict[str, DeviceInfo] = {}
        by_mac: dict[str, DeviceInfo] = {}
        by_uuid: dict[str, DeviceInfo] = {}
        for dev in devices:
            _add_unique(by_id, dev.device_id, dev, "device_id")
            if dev.ip:
                _add_unique(by_ip, dev.ip, dev, "ip")
            if dev.mac:
                _add_unique(by_mac, dev.mac, dev, "mac")
            if dev.uuid:
                _add_unique(by_uuid, dev.uuid, dev, "uuid")
        object.__setattr__(self, "_by_id", MappingProxyType(by_id))
        object.__setattr__(self, "_by_ip", MappingProxyType(by_ip))
        object.__setattr__(self, "_by_mac", MappingProxyType(by_mac))
        object.__setattr__(self, "_by_uuid", MappingProxyType(by_uuid))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("DeviceRegistry is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("DeviceRegistry is read-only")

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> DeviceRegistry:
        """Registry from mappings with the CSV column names (extra keys ignored)."""
        return cls(device_from_row(row, line) for line, row in enumerate(rows, start=1))

    @classmethod
    def from_csv(cls, path: str | PathLike[str]) -> DeviceRegistry:
        """Registry from a UTF-8 (optionally BOM) CSV file with the contracts.md header."""
        with open(path, encoding="utf-8-sig", newline="") as fh:
            return cls.from_csv_text(fh.read())

    @classmethod
    def from_csv_text(cls, text: str) -> DeviceRegistry:
        """Registry from CSV text (header row required)."""
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"device registry CSV lacks columns {missing}")
        return cls.from_rows(reader)

    # --- lookups --------------------------------------------------------------------------

    def lookup(self, device_id: str) -> DeviceInfo | None:
        """Device by its registry id."""
        return self._by_id.get(str(device_id).strip()) if device_id is not None else None

    def by_ip(self, ip: str | None) -> DeviceInfo | None:
        """Device by configured IP (any textual form of the same address)."""
        key = normalize_ip(ip)
        return self._by_ip.get(key) if key else None

    def by_mac(self, mac: str | None) -> DeviceInfo | None:
        """Device by MAC in any common notation."""
        key = normalize_mac(mac)
        return self._by_mac.get(key) if key else None

    def by_uuid(self, uuid: str | None) -> DeviceInfo | None:
        """Device by UUID / serial (case-insensitive)."""
        key = normalize_uuid(uuid)
        return self._by_uuid.get(key) if key else None

    def resolve(self, mac: str | None = None, ip: str | None = None, uuid: str | None = None,
                device_id: str | None = None) -> DeviceInfo | None:
        """First match in priority MAC, IP, UUID, device_id; None when nothing matches."""
        return (self.by_mac(mac) or self.by_ip(ip) or self.by_uuid(uuid)
                or (self.lookup(device_id) if device_id else None))

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[DeviceInfo]:
        return iter(self._by_id.values())

    def __contains__(self, device_id: object) -> bool:
        return isinstance(device_id, str) and device_id in self._by_id

    def __repr__(self) -> str:
        return f"DeviceRegistry({len(self)} devices)"


def device_from_row(row: Mapping[str, Any], line: int = 0) -> DeviceInfo:
    """Validate one registry row into a DeviceInfo; ValueError names the row and field."""
    def text(name: str) -> str | None:
        value = row.get(name)
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    where = f"registry row {line}" if line else "registry row"
    device_id = text("device_id")
    if not device_id:
        raise ValueError(f"{where}: missing device_id")
    kind = text("kind") or ""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"{where} ({device_id}): kind {kind!r} not in {sorted(DEVICE_KINDS)}")
    ip_raw, mac_raw = text("ip"), text("mac")
    ip = normalize_ip(ip_raw)
    if ip_raw and not ip:
        raise ValueError(f"{where} ({device_id}): ip {ip_raw!r} is not an IP address")
    mac = normalize_mac(mac_raw)
    if mac_raw and not mac:
        raise ValueError(f"{where} ({device_id}): mac {mac_raw!r} is not a MAC address")
    lat = _coord(text("lat"), -90.0, 90.0, where, device_id, "lat")
    lon = _coord(text("lon"), -180.0, 180.0, where, device_id, "lon")
    admin_code = text("admin_code")
    if admin_code and not re.fullmatch(r"\d{6,12}", admin_code):
        raise ValueError(f"{where} ({device_id}): admin_code {admin_code!r} must be 6-12 digits")
    return DeviceInfo(device_id=device_id, kind=kind, name=text("name") or device_id, ip=ip, mac=mac,
                      uuid=normalize_uuid(text("uuid")), lat=lat, lon=lon, admin_code=admin_code,
                      address=text("address"))


def _coord(value: str | None, lo: float, hi: float, where: str, device_id: str, name: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{where} ({device_id}): {name} {value!r} is not a number") from None
    if not lo <= number <= hi:
        raise ValueError(f"{where} ({device_id}): {name} {number} out of range")
    return number


def _add_unique(index: dict[str, DeviceInfo], key: str, dev: DeviceInfo, what: str) -> None:
    other = index.get(key)
    if other is not None:
        raise ValueError(f"duplicate {what} {key!r} in device registry ({other.device_id}, {dev.device_id})")
    index[key] = dev
