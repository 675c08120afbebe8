"""A partner's own data as a site folder of an existing federation.

A partner that was not cut out of a city by the partitioner holds a City of its
own, made with ``kizashi city import``: its districts, its sensors, frames,
reports and events. `write_own_site` lays it out as a site folder of the
federation whose public layer it is given, so that ``kizashi join`` and the
ClientApp read it as they read any partitioned site. What it cannot use is said,
not silently dropped:

- districts the public layer lacks stop the write (the model's graph has no
  place for them);
- sensor readings off the federation's time grid, and channels the federation
  does not have, are left out with a warning that counts them;
- a site without frames or reports is marked so, as partitioned sites are.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from datasets.atomic import write_folder_atomically
from datasets.city import City
from datasets.errors import CityDataError, CityDataWarning
from datasets.partition import SiteInfo
from datasets.partition_io import PrivateDataSlicer, write_site


def own_site_info(city: City, public: City, site_id: str, city_dir: Path) -> SiteInfo:
    """The `SiteInfo` of a partner's City against the federation's public layer.

    Raises:
        CityDataError: A district is not in the public layer, no sensor reading
            lies on its time grid, or ``site_id`` is not a folder name.
    """
    if not site_id or Path(site_id).name != site_id or site_id.startswith("."):
        raise CityDataError(city_dir, f"site id {site_id!r} is not a plain folder name")
    unknown = sorted(set(city.district_ids) - set(public.district_ids))
    if unknown:
        raise CityDataError(
            city_dir / "districts.parquet",
            f"{len(unknown)} districts are not in the federation's public layer "
            f"(first: {unknown[:5]}); a site can only hold the federation's districts",
        )
    grid = public.sensors["time"].values
    times = city.sensors["time"].values
    on_grid = np.isin(times, grid)
    if len(times) and not on_grid.any():
        raise CityDataError(
            city_dir / "sensors.nc",
            f"none of its {len(times)} time stamps lies on the federation's time grid "
            f"({grid[0]} to {grid[-1]})",
        )
    if not on_grid.all():
        warnings.warn(
            f"{city_dir / 'sensors.nc'}: {int((~on_grid).sum())} of {len(times)} time stamps "
            "are off the federation's time grid; their readings are left out",
            CityDataWarning,
            stacklevel=2,
        )
    channels = [str(name) for name in city.sensors.data_vars]
    public_channels = [str(name) for name in public.sensors.data_vars]
    extra = sorted(set(channels) - set(public_channels))
    if extra:
        warnings.warn(
            f"{city_dir / 'sensors.nc'}: channels {extra} are not the federation's; "
            "they are left out",
            CityDataWarning,
            stacklevel=2,
        )
    return SiteInfo(
        site_id=site_id,
        districts=tuple(city.district_ids),
        no_cameras=len(city.images) == 0,
        no_reports=len(city.reports) == 0,
        missing_channels=tuple(name for name in public_channels if name not in channels),
    )


def write_own_site(
    city: City, public: City, site_id: str, out_dir: str | Path, city_dir: str | Path = "."
) -> SiteInfo:
    """Write a partner's City as site ``site_id`` of the federation of ``public``.

    The folder is written atomically: a failure leaves any earlier one in place.

    Args:
        city: The partner's City (its districts and records only).
        public: The federation's public layer (``FED/public``).
        site_id: The site's name in the federation.
        out_dir: The site folder to write.
        city_dir: Where ``city`` was read from, to name files in errors.

    Returns:
        The site's `SiteInfo`, as written to its ``site.json``.
    """
    site = own_site_info(city, public, site_id, Path(city_dir))
    private = PrivateDataSlicer(city).site_city(site)
    write_folder_atomically(out_dir, lambda staging: write_site(staging, private, site))
    return site
