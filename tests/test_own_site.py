"""A partner's own City as a site folder of an existing federation (`datasets.own_site`)."""

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from datasets import City, CityDataError, CityDataWarning
from datasets.graph import build_district_graph
from datasets.own_site import write_own_site
from datasets.partition import SiteInfo
from datasets.partition_io import PrivateDataSlicer, load_site, read_site_info, write_site
from pipelines.cli import app
from pipelines.join import JoinOptions, read_joining_site
from tests.federation_helpers import tiny_partitions

__all__ = ["tiny_partitions"]


def _partner_city(city: City, ids: tuple[str, ...], folder) -> City:
    """What a partner holding ``ids`` would import: its districts and its records only."""
    view = PrivateDataSlicer(city).site_city(SiteInfo("partner", ids))
    districts = city.districts[city.districts["district_id"].isin(ids)].reset_index(drop=True)
    own = dataclasses.replace(view, districts=districts, graph=build_district_graph(districts))
    return City.load(own.save(folder))


@pytest.fixture(scope="module")
def partner(tiny_city, tmp_path_factory):
    ids = tuple(tiny_city.district_ids[3:6])
    return ids, _partner_city(tiny_city, ids, tmp_path_factory.mktemp("partner") / "city")


def test_a_partner_city_reads_as_the_partitioner_s_site_of_its_districts(
    tiny_city, tiny_partitions, partner, tmp_path
):
    ids, own = partner
    public = City.load(tiny_partitions / "public")
    written = write_own_site(own, public, "ward-3", tmp_path / "ward-3")
    assert written.districts == ids and read_site_info(tmp_path / "ward-3") == written
    reference = SiteInfo("ward-3", ids)
    write_site(tmp_path / "reference", PrivateDataSlicer(tiny_city).site_city(reference), reference)
    mine, _ = load_site(tmp_path / "ward-3", public)
    theirs, _ = load_site(tmp_path / "reference", public)
    xr.testing.assert_identical(mine.sensors, theirs.sensors)
    for name in ("images", "reports", "events"):
        pd.testing.assert_frame_equal(getattr(mine, name), getattr(theirs, name))
    assert np.array_equal(mine.frames, theirs.frames)
    assert len(mine.reports) and len(mine.events)  # the comparison compared something


def test_what_a_partner_city_cannot_bring_is_refused_or_counted(
    tiny_city, tiny_partitions, partner, tmp_path
):
    ids, own = partner
    public = City.load(tiny_partitions / "public")
    with pytest.raises(CityDataError, match="plain folder name"):
        write_own_site(own, public, "../elsewhere", tmp_path / "a")
    stranger = dataclasses.replace(
        public, districts=public.districts[~public.districts["district_id"].isin(ids[:1])]
    )
    with pytest.raises(CityDataError, match="1 districts are not in the federation"):
        write_own_site(own, stranger, "ward-3", tmp_path / "b")
    times = own.sensors["time"].values
    shifted = own.sensors.assign_coords(time=times + np.timedelta64(30, "m"))
    with pytest.raises(CityDataError, match="none of its .* time stamps"):
        write_own_site(dataclasses.replace(own, sensors=shifted), public, "ward-3", tmp_path / "c")
    assert not any((tmp_path / name).exists() for name in "abc")
    half = np.where(np.arange(len(times)) % 2 == 0, times, times + np.timedelta64(30, "m"))
    extra = own.sensors.assign_coords(time=half)
    extra["radiation"] = extra[next(iter(extra.data_vars))] * 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_own_site(dataclasses.replace(own, sensors=extra), public, "ward-3", tmp_path / "d")
    said = [str(w.message) for w in caught if issubclass(w.category, CityDataWarning)]
    assert any(f"{len(times) // 2} of {len(times)} time stamps" in line for line in said), said
    assert any("['radiation']" in line for line in said), said
    loaded, _ = load_site(tmp_path / "d", public)
    assert "radiation" not in loaded.sensors.data_vars


def test_a_partner_makes_its_site_and_join_reads_it(tiny_partitions, partner, tmp_path):
    ids, own = partner
    own_dir = tmp_path / "own"
    own.save(own_dir)
    public = tiny_partitions / "public"
    command = ["city", "site", str(own_dir), str(tmp_path / "ward-3"), "--public", str(public)]
    result = CliRunner().invoke(app, [*command, "--site-id", "ward-3"])
    assert result.exit_code == 0, result.output
    assert "ward-3" in result.output and "wrote site ward-3" in result.output
    options = JoinOptions("fed.example:9091", tmp_path / "ward-3", public_dir=public, insecure=True)
    summary = read_joining_site(options)
    assert (summary.site_id, summary.n_districts) == ("ward-3", len(ids))
    assert summary.train_samples > 0
    result = CliRunner().invoke(app, [*command, "--site-id", "../ward"])
    assert result.exit_code == 2 and "plain folder name" in result.output
