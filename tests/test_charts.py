"""kindmesh:charts: a repository URL, or a local chart directory/archive (air-gapped hosts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kindmesh.core.charts import ChartSourceError, chart_location
from kindmesh.core.config import CILIUM_CHART_REPO, ConfigError, parse_config
from tests.helpers import stack_raw

SHARED_CHARTS = Path(__file__).resolve().parents[2] / "shared" / "upstream" / "charts"


def test_repository_url_is_a_repository() -> None:
    loc = chart_location("https://helm.cilium.io", "cilium", "1.19.6")
    assert (loc.chart, loc.repo, loc.local) == ("cilium", "https://helm.cilium.io", False)
    oci = chart_location("oci://registry.example/charts/", "metallb", "0.15.3")
    assert (oci.chart, oci.repo) == ("oci://registry.example/charts/metallb", None)


def test_directory_of_archives_picks_the_version(tmp_path: Path) -> None:
    (tmp_path / "cilium-1.19.6.tgz").write_bytes(b"x")
    loc = chart_location(str(tmp_path), "cilium", "1.19.6")
    assert loc.local and loc.chart == str(tmp_path / "cilium-1.19.6.tgz") and loc.repo is None
    with pytest.raises(ChartSourceError, match=r"no cilium-1\.20\.0\.tgz"):
        chart_location(str(tmp_path), "cilium", "1.20.0")
    rel = chart_location(tmp_path.name, "cilium", "1.19.6", base=tmp_path.parent)
    assert rel.chart == str(tmp_path / "cilium-1.19.6.tgz")


def test_missing_path_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    raw = stack_raw("dev")
    raw["charts"] = {"cilium": str(tmp_path / "nope"), "metallb": str(tmp_path)}
    with pytest.raises(ConfigError) as exc:
        parse_config(raw)
    text = str(exc.value)
    assert "kindmesh:charts.cilium" in text and "kindmesh:charts.metallb" in text
    assert "metallb-" in text and ".tgz" in text


def test_default_is_the_public_repository() -> None:
    assert parse_config(stack_raw("dev")).charts.cilium == CILIUM_CHART_REPO


@pytest.mark.skipif(not SHARED_CHARTS.is_dir(), reason="../shared/upstream/charts is absent (a user's clone)")
def test_the_released_archives_serve_as_a_chart_source() -> None:
    raw = stack_raw("dev")
    raw["charts"] = {"cilium": str(SHARED_CHARTS), "metallb": str(SHARED_CHARTS)}
    cfg = parse_config(raw)
    assert chart_location(cfg.charts.cilium, "cilium", cfg.cilium.version).local
