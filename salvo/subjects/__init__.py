"""Per-subject neuroimaging batches: manifests, BIDS discovery, the built-in pipeline, locks and reports."""

from salvo.subjects.config import config_hash, option_flags
from salvo.subjects.discover import discover_bids, filter_units
from salvo.subjects.manifest import Manifest, ManifestError, Subject, load_manifest, validate_manifest
from salvo.subjects.plan import SubjectPlan, build_items, build_worker, plan_subjects
from salvo.subjects.unit import process_subject

__all__ = [
    "Manifest",
    "ManifestError",
    "Subject",
    "SubjectPlan",
    "build_items",
    "build_worker",
    "config_hash",
    "discover_bids",
    "filter_units",
    "load_manifest",
    "option_flags",
    "plan_subjects",
    "process_subject",
    "validate_manifest",
]
