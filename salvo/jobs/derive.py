"""Derived columns a profile adds to each record batch (vectorised, batch by batch)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from salvo.errors import InputError

# INSEE's headcount bands (trancheEffectifsEtablissement) -> (min, max) employees.
_BANDS = {
    "00": (0, 0),
    "01": (1, 2),
    "02": (3, 5),
    "03": (6, 9),
    "11": (10, 19),
    "12": (20, 49),
    "21": (50, 99),
    "22": (100, 199),
    "31": (200, 249),
    "32": (250, 499),
    "41": (500, 999),
    "42": (1000, 1999),
    "51": (2000, 4999),
    "52": (5000, 9999),
    "53": (10000, None),
}
_BAND_CODES = pa.array(list(_BANDS))
_BAND_MIN = pa.array([v[0] for v in _BANDS.values()], pa.int32())
_BAND_MAX = pa.array([v[1] for v in _BANDS.values()], pa.int32())


DATE_COLUMN = "dateCreationEtablissement"
COMMUNE_COLUMN = "codeCommuneEtablissement"
POSTCODE_COLUMN = "codePostalEtablissement"
_NULL_STRING = pa.scalar(None, pa.string())


def as_text(values: pa.Array | pa.ChunkedArray, *, name: str, width: int = 0) -> pa.Array:
    """A code column as text: ``string`` whatever the input stored (large_string, dictionary, or an
    integer that lost its leading zeros, padded back to ``width``); empty strings become null."""
    t = values.type
    if pa.types.is_dictionary(t):
        values, t = values.cast(t.value_type), t.value_type
    if pa.types.is_integer(t):
        values = pc.cast(values, pa.string())
        if width:
            values = pc.utf8_lpad(values, width=width, padding="0")
    elif pa.types.is_large_string(t) or pa.types.is_string(t):
        values = values.cast(pa.string())
    else:
        raise InputError(f"column {name!r}: expected text codes, found type {t}")
    values = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(values, ""), _NULL_STRING, values)


def as_date(values: pa.Array | pa.ChunkedArray, *, name: str) -> pa.Array:
    """A date column as date32, from a date, a timestamp, or text ``YYYY-MM-DD`` (empty: null).

    Any other text raises an InputError naming the column and the first value that is not a date.
    """
    t = values.type
    if pa.types.is_dictionary(t):
        values, t = values.cast(t.value_type), t.value_type
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return values.cast(pa.date32())
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise InputError(f"column {name!r}: expected dates or YYYY-MM-DD text, found type {t}")
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    text = pc.if_else(pc.equal(text, ""), _NULL_STRING, text)
    parsed = pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True)
    bad = pc.and_(pc.is_valid(text), pc.is_null(parsed))
    if pc.any(bad).as_py():
        first = text.filter(bad)[0].as_py()
        raise InputError(f"column {name!r}: {first!r} is not a date (expected YYYY-MM-DD or empty)")
    return parsed.cast(pa.date32())


def _departement(batch: pa.RecordBatch) -> pa.Array:
    """The département from the INSEE commune code (``2A004`` -> ``2A``; overseas ``97411`` -> ``974``),
    or from the postcode when the input has no commune code (Corsica's ``20xxx`` split by range)."""
    names = batch.schema.names
    if COMMUNE_COLUMN in names:
        code = as_text(batch.column(COMMUNE_COLUMN), name=COMMUNE_COLUMN, width=5)
        overseas = pc.starts_with(code, "97")
        return pc.if_else(overseas, pc.utf8_slice_codeunits(code, 0, 3), pc.utf8_slice_codeunits(code, 0, 2))
    cp = as_text(batch.column(POSTCODE_COLUMN), name=POSTCODE_COLUMN, width=5)
    two = pc.utf8_slice_codeunits(cp, 0, 2)
    three = pc.utf8_slice_codeunits(cp, 0, 3)
    # La Poste: 200xx and 201xx are Corse-du-Sud (2A), 202xx and 206xx Haute-Corse (2B).
    corsica = pc.if_else(pc.is_in(three, value_set=pa.array(["200", "201"])), pa.scalar("2A"), pa.scalar("2B"))
    return pc.if_else(pc.starts_with(cp, "97"), three, pc.if_else(pc.equal(two, "20"), corsica, two))


def _annee_creation(batch: pa.RecordBatch) -> pa.Array:
    return pc.year(as_date(batch.column(DATE_COLUMN), name=DATE_COLUMN)).cast(pa.int32())


def _age_annees(batch: pa.RecordBatch) -> pa.Array:
    today = pa.scalar(_dt.date.today(), pa.date32())
    days = pc.days_between(as_date(batch.column(DATE_COLUMN), name=DATE_COLUMN), today)
    return pc.divide(days.cast(pa.float64()), 365.25)


def _effectif(bounds: pa.Array) -> Callable[[pa.RecordBatch], pa.Array]:
    def derive(batch: pa.RecordBatch) -> pa.Array:
        band = as_text(batch.column("trancheEffectifsEtablissement"), name="trancheEffectifsEtablissement", width=2)
        idx = pc.index_in(band, value_set=_BAND_CODES)
        return pc.take(bounds, idx)

    return derive


def _naf_prefix(length: int) -> Callable[[pa.RecordBatch], pa.Array]:
    def derive(batch: pa.RecordBatch) -> pa.Array:
        naf = as_text(batch.column("activitePrincipaleEtablissement"), name="activitePrincipaleEtablissement")
        return pc.utf8_slice_codeunits(naf, 0, length)

    return derive


#: name -> (function of a batch, input columns it needs; for departement, the first one present)
DERIVED: dict[str, tuple[Callable[[pa.RecordBatch], pa.Array], tuple[str, ...]]] = {
    "departement": (_departement, (COMMUNE_COLUMN, POSTCODE_COLUMN)),
    "annee_creation": (_annee_creation, (DATE_COLUMN,)),
    "age_annees": (_age_annees, (DATE_COLUMN,)),
    "effectif_min": (_effectif(_BAND_MIN), ("trancheEffectifsEtablissement",)),
    "effectif_max": (_effectif(_BAND_MAX), ("trancheEffectifsEtablissement",)),
    "naf_division": (_naf_prefix(2), ("activitePrincipaleEtablissement",)),
    "naf_groupe": (_naf_prefix(4), ("activitePrincipaleEtablissement",)),
}


#: Derived columns computed from the first of their inputs that the file has.
_ANY_OF = {"departement"}


def derived_inputs(name: str, columns: Iterable[str]) -> tuple[str, ...] | None:
    """The input columns ``name`` is computed from in a file with ``columns``, or None if it cannot be."""
    needs = DERIVED[name][1]
    have = set(columns)
    if name in _ANY_OF:
        first = next((c for c in needs if c in have), None)
        return None if first is None else (first,)
    return needs if set(needs) <= have else None


def add_derived(batch: pa.RecordBatch, *, names: tuple[str, ...]) -> pa.RecordBatch:
    """Return ``batch`` with the derived columns ``names`` appended (skipping any whose input is absent).

    A value that cannot be read (a date column holding something else) raises an InputError naming
    the column.
    """
    arrays = list(batch.columns)
    fields = list(batch.schema)
    present = batch.schema.names
    for name in names:
        if derived_inputs(name, present) is None:
            continue
        arrays.append(DERIVED[name][0](batch))
        fields.append(pa.field(name, arrays[-1].type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
