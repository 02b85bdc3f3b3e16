"""Derived columns a profile adds to each record batch (vectorised, batch by batch)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

# INSEE's headcount bands (trancheEffectifsEtablissement) -> (min, max) employees.
_BANDS = {
    "00": (0, 0), "01": (1, 2), "02": (3, 5), "03": (6, 9), "11": (10, 19), "12": (20, 49),
    "21": (50, 99), "22": (100, 199), "31": (200, 249), "32": (250, 499), "41": (500, 999),
    "42": (1000, 1999), "51": (2000, 4999), "52": (5000, 9999), "53": (10000, None),
}
_BAND_CODES = pa.array(list(_BANDS))
_BAND_MIN = pa.array([v[0] for v in _BANDS.values()], pa.int32())
_BAND_MAX = pa.array([v[1] for v in _BANDS.values()], pa.int32())


def _departement(batch: pa.RecordBatch) -> pa.Array:
    cp = batch.column("codePostalEtablissement")
    # Overseas departments (971..976) have three digits; the rest of France two.
    overseas = pc.starts_with(cp, "97")
    return pc.if_else(overseas, pc.utf8_slice_codeunits(cp, 0, 3), pc.utf8_slice_codeunits(cp, 0, 2))


def _annee_creation(batch: pa.RecordBatch) -> pa.Array:
    return pc.year(batch.column("dateCreationEtablissement")).cast(pa.int32())


def _age_annees(batch: pa.RecordBatch) -> pa.Array:
    today = pa.scalar(_dt.date.today(), pa.date32())
    days = pc.days_between(batch.column("dateCreationEtablissement"), today)
    return pc.divide(days.cast(pa.float64()), 365.25)


def _effectif(bounds: pa.Array) -> Callable[[pa.RecordBatch], pa.Array]:
    def derive(batch: pa.RecordBatch) -> pa.Array:
        idx = pc.index_in(batch.column("trancheEffectifsEtablissement"), value_set=_BAND_CODES)
        return pc.take(bounds, idx)

    return derive


def _naf_prefix(length: int) -> Callable[[pa.RecordBatch], pa.Array]:
    def derive(batch: pa.RecordBatch) -> pa.Array:
        return pc.utf8_slice_codeunits(batch.column("activitePrincipaleEtablissement"), 0, length)

    return derive


#: name -> (function of a batch, input columns it needs)
DERIVED: dict[str, tuple[Callable[[pa.RecordBatch], pa.Array], tuple[str, ...]]] = {
    "departement": (_departement, ("codePostalEtablissement",)),
    "annee_creation": (_annee_creation, ("dateCreationEtablissement",)),
    "age_annees": (_age_annees, ("dateCreationEtablissement",)),
    "effectif_min": (_effectif(_BAND_MIN), ("trancheEffectifsEtablissement",)),
    "effectif_max": (_effectif(_BAND_MAX), ("trancheEffectifsEtablissement",)),
    "naf_division": (_naf_prefix(2), ("activitePrincipaleEtablissement",)),
    "naf_groupe": (_naf_prefix(4), ("activitePrincipaleEtablissement",)),
}


def add_derived(batch: pa.RecordBatch, *, names: tuple[str, ...]) -> pa.RecordBatch:
    """Return ``batch`` with the derived columns ``names`` appended (skipping any whose input is absent)."""
    arrays = list(batch.columns)
    fields = list(batch.schema)
    present = set(batch.schema.names)
    for name in names:
        fn, needs = DERIVED[name]
        if not set(needs) <= present:
            continue
        arrays.append(fn(batch))
        fields.append(pa.field(name, arrays[-1].type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
