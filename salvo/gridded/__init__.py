"""Gridded model runs (dvmdostem): salvage failed cells, re-run them, merge the outputs back."""

from salvo.gridded.backup import BackupReport, backup_outputs, verify_backup
from salvo.gridded.formats import (
    FAILED,
    NOT_RUN,
    STATUS_FILE,
    STATUS_FILL,
    SUCCESS,
    TIMED_OUT,
    read_mask,
    read_merge_source,
    read_status,
    rewrite_mask,
    write_run_mask,
    write_run_status,
)
from salvo.gridded.merge import MergeReport, MergeVerificationError, merge_outputs
from salvo.gridded.salvage import SalvageReport, StatusCounts, build_rerun_mask, count_statuses, salvage_run

__all__ = [
    "FAILED",
    "NOT_RUN",
    "STATUS_FILE",
    "STATUS_FILL",
    "SUCCESS",
    "TIMED_OUT",
    "BackupReport",
    "MergeReport",
    "MergeVerificationError",
    "SalvageReport",
    "StatusCounts",
    "backup_outputs",
    "build_rerun_mask",
    "count_statuses",
    "merge_outputs",
    "read_mask",
    "read_merge_source",
    "read_status",
    "rewrite_mask",
    "salvage_run",
    "verify_backup",
    "write_run_mask",
    "write_run_status",
]
