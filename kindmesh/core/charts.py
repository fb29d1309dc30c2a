"""Where a chart comes from: a Helm repository, or a local path (air-gapped hosts).

Pure (no pulumi): the config checks a source with :func:`chart_location`, and the Helm
release takes what it returns.

May import: nothing (no module of kindmesh).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REMOTE_SCHEMES = ("https://", "http://", "oci://")


class ChartSourceError(ValueError):
    pass


@dataclass(frozen=True)
class ChartLocation:
    chart: str  # the chart name (with a repository), an oci:// reference, or a local path
    repo: str | None  # the repository URL; None for an oci:// reference or a local chart
    local: bool = False


def chart_location(source: str, chart: str, version: str, base: Path | None = None) -> ChartLocation:
    """``source`` as Helm takes it: a repository URL, a directory of ``<chart>-<version>.tgz``
    archives, a chart archive, or an unpacked chart directory (``Chart.yaml`` in it).

    Relative paths are resolved against ``base`` (default: the working directory, which is
    the project directory when Pulumi runs the program).
    """
    if source.startswith(REMOTE_SCHEMES):
        if source.startswith("oci://"):
            return ChartLocation(f"{source.rstrip('/')}/{chart}", None)
        return ChartLocation(chart, source)
    path = Path(os.path.expanduser(source))
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    archive = path / f"{chart}-{version}.tgz"
    if path.is_dir() and archive.is_file():
        return ChartLocation(str(archive), None, local=True)
    if path.is_dir() and (path / "Chart.yaml").is_file():
        return ChartLocation(str(path), None, local=True)
    if path.is_file() and path.name.endswith((".tgz", ".tar.gz")):
        return ChartLocation(str(path), None, local=True)
    if path.is_dir():
        raise ChartSourceError(
            f"{source!r} has no {chart}-{version}.tgz (nor a Chart.yaml); put the {chart} {version} chart "
            f"archive there (`helm pull {chart} --version {version}` on a connected host), or use a repository URL"
        )
    raise ChartSourceError(
        f"{source!r} is neither a repository URL (https://, oci://) nor an existing chart directory or "
        "archive; fix the path or use the public repository"
    )
