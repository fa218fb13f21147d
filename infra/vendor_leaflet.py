"""Vendor the Leaflet map library into the operator page (build time; never a CDN URL in the page).

Contract: `vendor(dest)` makes ``dest`` (default ``streams/web/static/vendor/leaflet/``) hold
``leaflet.js``, ``leaflet.css``, ``images/*.png`` and ``LICENSE`` of the pinned npm package
``leaflet@VERSION``: it downloads the tarball from the npm registry, checks its ``sha512``
integrity against `INTEGRITY` (the value ``npm view leaflet@VERSION dist.integrity`` prints) and
refuses anything else (`VendorError`). Does nothing when ``dest/VERSION`` already names the
pinned version. The files are committed to the repository, so CI and the tests need no network;
run this only to re-create them or when bumping the pin::

    python -m infra.vendor_leaflet [--dest DIR] [--force]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import shutil
import tarfile
import urllib.request
from pathlib import Path

PACKAGE = "leaflet"
VERSION = "1.9.4"
TARBALL = f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
INTEGRITY = "sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3XnWyZAxwQixURb+FA74PA=="
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / "streams" / "web" / "static" / "vendor" / "leaflet"
#: files taken from the package (paths inside the tarball, below ``package/``)
WANTED = ("dist/leaflet.js", "dist/leaflet.css", "dist/images/layers.png", "dist/images/layers-2x.png",
          "dist/images/marker-icon.png", "dist/images/marker-icon-2x.png", "dist/images/marker-shadow.png",
          "LICENSE")


class VendorError(RuntimeError):
    """The download failed or does not match the pinned integrity."""


def check_integrity(data: bytes, integrity: str = INTEGRITY) -> None:
    """Raise VendorError unless `data` has the Subresource-Integrity style ``sha512-<base64>``."""
    algo, _, expected = integrity.partition("-")
    if algo != "sha512":
        raise VendorError(f"unsupported integrity algorithm {algo!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")
    if actual != expected:
        raise VendorError(f"{PACKAGE}-{VERSION}.tgz integrity mismatch: got sha512-{actual}")


def unpack(data: bytes, dest: Path) -> list[Path]:
    """Write the `WANTED` members of the npm tarball `data` under `dest` (flattening ``dist/``)."""
    written: list[Path] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for name in WANTED:
            member = tar.getmember(f"package/{name}")
            src = tar.extractfile(member)
            if src is None:
                raise VendorError(f"{name} is not a file in the package")
            target = dest / name.removeprefix("dist/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read())
            written.append(target)
    (dest / "VERSION").write_text(f"{PACKAGE}@{VERSION} {INTEGRITY}\n", encoding="utf-8")
    return written


def vendored(dest: Path = DEFAULT_DEST) -> bool:
    """Whether `dest` already holds the pinned version."""
    marker = dest / "VERSION"
    return marker.exists() and marker.read_text(encoding="utf-8").split()[0] == f"{PACKAGE}@{VERSION}" \
        and (dest / "leaflet.js").exists()


def vendor(dest: Path = DEFAULT_DEST, *, force: bool = False, timeout_s: float = 60) -> bool:
    """Download, verify and unpack the pinned Leaflet into `dest`; False when already there."""
    if vendored(dest) and not force:
        return False
    with urllib.request.urlopen(TARBALL, timeout=timeout_s) as resp:  # noqa: S310 - fixed https URL
        data = resp.read()
    check_integrity(data)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    unpack(data, tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    done = vendor(args.dest, force=args.force)
    print(f"{PACKAGE}@{VERSION} {'vendored into' if done else 'already in'} {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
