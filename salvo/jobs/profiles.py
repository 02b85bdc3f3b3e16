"""Job profiles: how many rows to sample by default, which columns to keep, which to derive."""

from __future__ import annotations

from dataclasses import dataclass

from salvo.errors import UsageError

_BASE_COLUMNS = (
    "siret",
    "siren",
    "activitePrincipaleEtablissement",
    "etatAdministratifEtablissement",
    "codePostalEtablissement",
    "libelleCommuneEtablissement",
)
_STANDARD_COLUMNS = _BASE_COLUMNS + (
    "nic",
    "dateCreationEtablissement",
    "trancheEffectifsEtablissement",
    "etablissementSiege",
    "denominationUsuelleEtablissement",
    "enseigne1Etablissement",
    "codeCommuneEtablissement",
)


@dataclass(frozen=True)
class Profile:
    """Settings a job inherits from its profile (the job file may override ``sample``)."""

    name: str
    sample_rows: int | None  # None: every matching row
    columns: tuple[str, ...] | None  # None: every column of the input
    derived: tuple[str, ...]  # names from salvo.jobs.derive.DERIVED
    description: str


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        sample_rows=1_000,
        columns=_BASE_COLUMNS,
        derived=("departement",),
        description="first 1,000 matching rows, 6 identity/location columns, + departement",
    ),
    "standard": Profile(
        name="standard",
        sample_rows=100_000,
        columns=_STANDARD_COLUMNS,
        derived=("departement", "annee_creation", "effectif_min", "effectif_max"),
        description="first 100,000 matching rows, 13 columns, + departement, creation year, headcount range",
    ),
    "deep": Profile(
        name="deep",
        sample_rows=None,
        columns=None,
        derived=(
            "departement",
            "annee_creation",
            "age_annees",
            "effectif_min",
            "effectif_max",
            "naf_division",
            "naf_groupe",
        ),
        description="every matching row, every input column, + 7 derived columns",
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; a UsageError lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}") from None
