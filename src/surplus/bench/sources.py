"""Where the benchmark's raw data files come from.

Nothing here is committed to the repository; every file is found in an installed
distribution or fetched with pip from the package registry:

* the Dutch day-ahead price CSV ships inside the ``ev2gym`` 2.0.0 wheel (installed with
  ``--no-deps``; the package itself is never imported, the file is located through its
  distribution metadata);
* the weather files (Amsterdam IWEC EPW, the Payerne BSRN June 2016 minute data, a few
  TMY/PSM samples) sit under ``tests/data`` of pvlib's *source* distribution, which
  ``pip download`` fetches into a cache directory once; single members are extracted on
  demand next to it and reused.

The cache directory is ``$SURPLUS_BENCH_DATA`` when set, else
``<sys.prefix>/share/surplus-bench``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zlib
from importlib import metadata
from pathlib import Path

from surplus.domain.errors import DataFileError

__all__ = [
    "EV2GYM_PRICES_MEMBER",
    "cache_dir",
    "nl_prices_csv",
    "pvlib_sdist",
    "pvlib_test_file",
]

EV2GYM_PRICES_MEMBER = "ev2gym/data/Netherlands_day-ahead-2015-2024.csv"
_EV2GYM_INSTALL = "python -m pip install --no-deps ev2gym==2.0.0"
_CACHE_ENV = "SURPLUS_BENCH_DATA"


def cache_dir() -> Path:
    """The directory that holds downloaded archives and extracted files (created if needed)."""
    configured = os.environ.get(_CACHE_ENV)
    path = Path(configured) if configured else Path(sys.prefix) / "share" / "surplus-bench"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFileError(path, f"cannot create the bench data directory: {exc}") from exc
    return path


def nl_prices_csv() -> Path:
    """Path of the Dutch day-ahead price CSV inside the installed ev2gym distribution."""
    try:
        dist = metadata.distribution("ev2gym")
    except metadata.PackageNotFoundError as exc:
        raise DataFileError(
            EV2GYM_PRICES_MEMBER,
            f"ev2gym is not installed; run `{_EV2GYM_INSTALL}`",
        ) from exc
    path = Path(str(dist.locate_file(EV2GYM_PRICES_MEMBER)))
    if not path.is_file():
        raise DataFileError(
            path,
            f"not found in the installed ev2gym {dist.version}; run `{_EV2GYM_INSTALL}`",
        )
    return path


def _pvlib_version() -> str:
    try:
        return metadata.version("pvlib")
    except metadata.PackageNotFoundError as exc:
        raise DataFileError("pvlib", "pvlib is not installed") from exc


def pvlib_sdist() -> Path:
    """The sdist tarball of the installed pvlib version, downloaded with pip if absent."""
    version = _pvlib_version()
    cache = cache_dir()
    tarball = cache / f"pvlib-{version}.tar.gz"
    if tarball.is_file():
        return tarball
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"pvlib=={version}",
        "-d",
        str(cache),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DataFileError(tarball, f"cannot run pip download: {exc}") from exc
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        tail = "\n".join(([line for line in lines if line.startswith("ERROR")] or lines)[-3:])
        raise DataFileError(
            tarball, f"pip download of pvlib=={version} failed (exit {done.returncode}): {tail}"
        )
    if not tarball.is_file():
        raise DataFileError(tarball, f"pip download of pvlib=={version} left no such file")
    return tarball


def pvlib_test_file(name: str) -> Path:
    """Path of ``tests/data/<name>`` from pvlib's sdist, extracted once into the cache."""
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise DataFileError(name or "''", "expected a bare file name from pvlib's tests/data")
    version = _pvlib_version()
    target = cache_dir() / f"pvlib-{version}" / "tests" / "data" / name
    if target.is_file():
        return target
    tarball = pvlib_sdist()
    member_name = f"pvlib-{version}/tests/data/{name}"
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            try:
                member = archive.getmember(member_name)
            except KeyError as exc:
                raise DataFileError(tarball, f"has no member {member_name}") from exc
            if not member.isfile():
                raise DataFileError(tarball, f"member {member_name} is not a regular file")
            source = archive.extractfile(member)
            if source is None:
                raise DataFileError(tarball, f"cannot read member {member_name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{name}.{os.getpid()}.part")
            with source, partial.open("wb") as sink:
                while chunk := source.read(1 << 20):
                    sink.write(chunk)
            partial.replace(target)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataFileError(tarball, f"cannot extract {member_name}: {exc}") from exc
    return target
