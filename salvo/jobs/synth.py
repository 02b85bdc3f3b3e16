"""A realistic synthetic SIRENE establishments file (real column names, skewed NAF mix), in the
layouts users really have: INSEE's official CSV (every column text), a Parquet copy that kept the
text, and a typed Parquet copy (dates as date32 or timestamps).

The variety of the real stock is there: Corsican communes (``2A004``, ``2B033``), overseas ones
(``97411``), codes with leading zeros (``01053``), empty creation dates, and rows whose activity
is coded in the older NAFRev1 nomenclature (``74.1A``), which look like rév. 2 prefixes.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from salvo.fsutil import atomic_path

# Real NAF rév. 2 subclasses, roughly from most to least frequent in the real SIRENE stock.
NAF_SUBCLASSES = (
    "68.20B",
    "70.10Z",
    "94.99Z",
    "68.20A",
    "47.91B",
    "86.90D",
    "70.22Z",
    "56.10A",
    "43.21A",
    "01.11Z",
    "96.02A",
    "85.59A",
    "62.01Z",
    "43.32A",
    "49.32Z",
    "41.20A",
    "43.99C",
    "45.20A",
    "69.20Z",
    "74.90B",
    "86.21Z",
    "56.30Z",
    "47.11B",
    "66.22Z",
    "43.22A",
    "43.31Z",
    "43.34Z",
    "81.21Z",
    "71.12B",
    "62.02A",
    "73.11Z",
    "96.09Z",
    "64.20Z",
    "10.71C",
    "43.29A",
    "93.12Z",
    "90.01Z",
    "85.59B",
    "55.10Z",
    "47.71Z",
    "68.31Z",
    "74.10Z",
    "43.11Z",
    "43.12A",
    "43.22B",
    "43.29B",
    "43.32B",
    "43.33Z",
    "43.39Z",
    "43.91A",
    "43.91B",
    "69.10Z",
    "71.11Z",
    "56.10C",
    "01.21Z",
    "10.13B",
    "47.30Z",
    "82.99Z",
    "88.10A",
    "95.11Z",
    "99.00Z",
    "02.20Z",
    "35.11Z",
)
# (code postal, commune, code commune INSEE)
COMMUNES = (
    ("75001", "PARIS 1", "75101"),
    ("75015", "PARIS 15", "75115"),
    ("13001", "MARSEILLE 1", "13201"),
    ("69003", "LYON 3EME", "69383"),
    ("31000", "TOULOUSE", "31555"),
    ("06000", "NICE", "06088"),
    ("44000", "NANTES", "44109"),
    ("67000", "STRASBOURG", "67482"),
    ("34000", "MONTPELLIER", "34172"),
    ("33000", "BORDEAUX", "33063"),
    ("59000", "LILLE", "59350"),
    ("35000", "RENNES", "35238"),
    ("51100", "REIMS", "51454"),
    ("76600", "LE HAVRE", "76351"),
    ("42000", "SAINT-ETIENNE", "42218"),
    ("83000", "TOULON", "83137"),
    ("38000", "GRENOBLE", "38185"),
    ("21000", "DIJON", "21231"),
    ("49000", "ANGERS", "49007"),
    ("20000", "AJACCIO", "2A004"),
    ("97400", "SAINT-DENIS", "97411"),
    ("97200", "FORT-DE-FRANCE", "97209"),
    ("29200", "BREST", "29019"),
    ("87000", "LIMOGES", "87085"),
    ("20200", "BASTIA", "2B033"),
    ("97600", "MAMOUDZOU", "97611"),
    ("01000", "BOURG-EN-BRESSE", "01053"),
)
#: NAFRev1 codes (older rows): same dotted look, other meanings; divisions 74 and 70 exist in rév. 2 too.
NAF_REV1_CODES = ("74.1A", "70.2A", "52.4C", "55.3A", "45.2B")
NAF_REV1_SHARE = 0.03
EMPTY_DATE_SHARE = 0.02
#: Layouts write_synthetic_sirene can produce.
LAYOUTS = ("typed", "typed-timestamp", "text", "csv")
EFFECTIF_BANDS = ("NN", "00", "01", "02", "03", "11", "12", "21", "22", "31", "32", "41", "42", "51", "52", "53")
_BAND_WEIGHTS = (40, 25, 15, 7, 5, 3, 2, 1, 0.6, 0.3, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02)
ENSEIGNES = ("", "", "", "CHEZ MARIE", "LE FOURNIL", "CABINET CONSEIL", "BATI PLUS", "GARAGE DU CENTRE")

SCHEMA = pa.schema(
    [
        ("siren", pa.string()),
        ("nic", pa.string()),
        ("siret", pa.string()),
        ("statutDiffusionEtablissement", pa.string()),
        ("dateCreationEtablissement", pa.date32()),
        ("trancheEffectifsEtablissement", pa.string()),
        ("anneeEffectifsEtablissement", pa.string()),
        ("dateDernierTraitementEtablissement", pa.timestamp("s")),
        ("etablissementSiege", pa.bool_()),
        ("nombrePeriodesEtablissement", pa.int16()),
        ("denominationUsuelleEtablissement", pa.string()),
        ("enseigne1Etablissement", pa.string()),
        ("codePostalEtablissement", pa.string()),
        ("libelleCommuneEtablissement", pa.string()),
        ("codeCommuneEtablissement", pa.string()),
        ("activitePrincipaleEtablissement", pa.string()),
        ("nomenclatureActivitePrincipaleEtablissement", pa.string()),
        ("caractereEmployeurEtablissement", pa.string()),
        ("etatAdministratifEtablissement", pa.string()),
    ]
)


def naf_weights(*, skew: float = 1.1) -> np.ndarray:
    """Zipf-like probabilities over NAF_SUBCLASSES (the first codes are by far the most common)."""
    w = 1.0 / np.arange(1, len(NAF_SUBCLASSES) + 1) ** skew
    return w / w.sum()


def _pick(values: tuple[str, ...], idx: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(idx))


def _digits(numbers: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width=width, padding="0")


def make_chunk(rows: int, *, rng: np.random.Generator, active_share: float = 0.6) -> pa.Table:
    """One chunk of synthetic establishments, following SCHEMA."""
    siren = _digits(rng.integers(100_000_000, 999_999_999, rows), 9)
    nic = _digits(rng.integers(10, 99_999, rows), 5)
    created = rng.integers(-9000, 20_000, rows).astype("int32")  # days since 1970: 1945..2024
    band = rng.choice(len(EFFECTIF_BANDS), rows, p=np.array(_BAND_WEIGHTS) / sum(_BAND_WEIGHTS))
    commune = rng.integers(0, len(COMMUNES), rows)
    naf = rng.choice(len(NAF_SUBCLASSES), rows, p=naf_weights())
    active = rng.random(rows) < active_share
    rev1 = rng.random(rows) < NAF_REV1_SHARE
    rev1_code = rng.integers(0, len(NAF_REV1_CODES), rows)
    no_date = rng.random(rows) < EMPTY_DATE_SHARE
    naf_arr = pc.if_else(pa.array(rev1), _pick(NAF_REV1_CODES, rev1_code), _pick(NAF_SUBCLASSES, naf))
    band_arr = _pick(EFFECTIF_BANDS, band)
    ens = _pick(ENSEIGNES, rng.integers(0, len(ENSEIGNES), rows))
    ens = pc.if_else(pc.equal(ens, ""), pa.scalar(None, pa.string()), ens)
    return pa.Table.from_arrays(
        [
            siren,
            nic,
            pc.binary_join_element_wise(siren, nic, ""),
            pa.array(np.full(rows, "O", dtype=object), pa.string()),
            pc.if_else(
                pa.array(no_date), pa.scalar(None, pa.date32()), pa.array(created, pa.int32()).cast(pa.date32())
            ),
            pc.if_else(pc.equal(band_arr, "NN"), pa.scalar(None, pa.string()), band_arr),
            pc.if_else(pc.equal(band_arr, "NN"), pa.scalar(None, pa.string()), pa.scalar("2022")),
            pa.array(rng.integers(1_600_000_000, 1_730_000_000, rows), pa.int64()).cast(pa.timestamp("s")),
            pa.array(rng.random(rows) < 0.7),
            pa.array(rng.integers(1, 6, rows).astype("int16")),
            pa.nulls(rows, pa.string()),
            ens,
            _pick(tuple(c[0] for c in COMMUNES), commune),
            _pick(tuple(c[1] for c in COMMUNES), commune),
            _pick(tuple(c[2] for c in COMMUNES), commune),
            naf_arr,
            pa.array(np.where(rev1, "NAFRev1", "NAFRev2").astype(object), pa.string()),
            pa.array(np.where(band > 1, "O", "N").astype(object), pa.string()),
            pa.array(np.where(active, "A", "F").astype(object), pa.string()),
        ],
        schema=SCHEMA,
    )


def as_text(table: pa.Table) -> pa.Table:
    """``table`` with every column as text, as INSEE writes its CSV: dates ``YYYY-MM-DD``, timestamps
    ``YYYY-MM-DDTHH:MM:SS``, booleans ``true``/``false``, and empty strings for missing values."""
    arrays = []
    for col in table.columns:
        t = col.type
        if pa.types.is_date(t):
            text = pc.strftime(col.cast(pa.timestamp("s")), format="%Y-%m-%d")
        elif pa.types.is_timestamp(t):
            text = pc.strftime(col, format="%Y-%m-%dT%H:%M:%S")
        elif pa.types.is_boolean(t):
            text = pc.if_else(col, pa.scalar("true"), pa.scalar("false"))
        else:
            text = col.cast(pa.string())
        arrays.append(pc.fill_null(text, ""))
    return pa.Table.from_arrays(arrays, schema=pa.schema([(n, pa.string()) for n in table.schema.names]))


def _typed_with_timestamps(table: pa.Table) -> pa.Table:
    i = table.schema.get_field_index("dateCreationEtablissement")
    return table.set_column(
        i, pa.field("dateCreationEtablissement", pa.timestamp("ms")), table.column(i).cast(pa.timestamp("ms"))
    )


def write_synthetic_sirene(
    path: str | Path,
    *,
    rows: int = 10_000,
    seed: int = 0,
    chunk_rows: int = 250_000,
    row_group_rows: int = 128 * 1024,
    layout: str | None = None,
) -> Path:
    """Write ``rows`` synthetic establishments to ``path`` chunk by chunk (memory stays ~one chunk).

    ``layout``: ``typed`` (Parquet, dates as date32), ``typed-timestamp`` (Parquet, creation dates
    as timestamps), ``text`` (Parquet, every column a string) or ``csv`` (INSEE's CSV: every column
    text, comma-separated, with a header). By default ``csv`` for a ``*.csv`` path, else ``typed``.
    """
    final = Path(path)
    layout = layout or ("csv" if final.name.endswith(".csv") else "typed")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    convert = {"typed": lambda t: t, "typed-timestamp": _typed_with_timestamps, "text": as_text, "csv": as_text}[layout]
    schema = convert(SCHEMA.empty_table()).schema
    rng = np.random.default_rng(seed)
    with atomic_path(final) as tmp, open(tmp, "wb") as sink:
        if layout == "csv":
            sink.write((",".join(schema.names) + "\n").encode())  # INSEE's header is not quoted
            writer = pacsv.CSVWriter(
                sink, schema, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none")
            )
        else:
            writer = pq.ParquetWriter(sink, schema, compression="snappy")
        with writer:
            done = 0
            while done < rows:
                n = min(chunk_rows, rows - done)
                chunk = convert(make_chunk(n, rng=rng))
                if layout == "csv":
                    writer.write_table(chunk)
                else:
                    writer.write_table(chunk, row_group_size=row_group_rows)
                done += n
            if rows == 0:
                writer.write_table(schema.empty_table())
    return final


def epoch_date(days: int) -> _dt.date:
    """The date ``days`` after 1970-01-01 (what dateCreationEtablissement stores)."""
    return _dt.date(1970, 1, 1) + _dt.timedelta(days=days)
