"""Where the raw data came from: metrics/download.json, written by the download stage (in git, next to
dvc.lock, which holds the data's hashes), shown in the report's data section.

For Kaggle, per dataset: the version actually received, its last-updated date, size, licence and the
download time, from the kaggle client's dataset call (GetDataset, the call behind `kaggle datasets
status --format`); and how the client logged in (which way, never who). For the offline sample: its
generator's seed and parameters (no time: the same parameters give the same bytes).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Optional

from pydantic import BaseModel

from stages.common.config import METRICS_DIR
from stages.contracts.jsonfile import JsonFile


class DatasetProvenance(BaseModel):
    """One dataset as received."""

    slug: str                                  # owner/name on Kaggle (the sample imitates this one); own: the folder
    images: int                                # image files found after unpacking (or generating)
    version_requested: Optional[int] = None    # download.datasets.<name>.version: None asks for the latest
    version: Optional[int] = None              # the version received (Kaggle only)
    last_updated: Optional[str] = None         # that version's date on Kaggle, ISO 8601
    title: Optional[str] = None
    license: Optional[str] = None
    total_bytes: Optional[int] = None          # the dataset's size on Kaggle
    downloaded_at: Optional[str] = None        # UTC, ISO 8601 (Kaggle only)


# How the kaggle client logged in: a token (KAGGLE_API_TOKEN, ~/.kaggle/access_token), a legacy key
# (kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY), `kaggle auth login`, or none (public datasets).
KaggleAuth = Literal["access_token", "legacy_api_key", "oauth", "anonymous"]


class Provenance(JsonFile):
    """metrics/download.json."""

    written_by: ClassVar[str] = "download"
    path: ClassVar[Path] = METRICS_DIR / "download.json"

    source: Literal["sample", "kaggle", "own"]
    datasets: dict[str, DatasetProvenance]
    sample: Optional[dict] = None              # download.sample, when source is sample
    auth: Optional[KaggleAuth] = None          # how the kaggle client logged in, when source is kaggle

    def describe(self, name: str) -> str:
        """One line for the report: which version of dataset `name`, from when."""
        found = self.datasets[name]
        if self.source == "sample":
            return f"offline sample imitating {found.slug}"
        if self.source == "own":
            return f"your own data, copied from {found.slug}"
        parts = [f"version {found.version}" if found.version is not None else "version unknown"]
        if found.version_requested is None:
            parts[0] += " (the latest at download time)"
        if found.last_updated:
            parts.append(f"updated {found.last_updated[:10]}")
        if found.downloaded_at:
            parts.append(f"downloaded {found.downloaded_at[:16].replace('T', ' ')} UTC")
        return ", ".join(parts)
