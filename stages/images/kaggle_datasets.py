"""A dataset on Kaggle through the official client (stages/images/kaggle_client.py): its reference, its
metadata, and what a call raises as one line.

Credentials never reach the output: errors are rebuilt from status codes and exception types, never
from the client's exception text, and the client's output passes through kaggle_client's scrubbing.
Used by the download stage and by the real run's plan (stages/plan.py).
"""

from __future__ import annotations

import contextlib
import datetime
from typing import Iterator

from stages.common.config import RAW_DIR, DatasetSource
from stages.common.errors import UserError
from stages.contracts.provenance import DatasetProvenance
from stages.images.kaggle_client import CREDENTIALS_HELP, SAMPLE_HINT, client_output, http_status
from stages.images.kaggle_login import ANONYMOUS, auth_of, secrets_of


def kaggle_ref(source: DatasetSource) -> str:
    """The dataset reference the kaggle client takes: owner/name, or owner/name/<version>."""
    return source.slug if source.version is None else f"{source.slug}/{source.version}"


def describe(source: DatasetSource) -> str:
    """The dataset as messages name it: 'owner/name' (latest version | version N)."""
    version = "latest version" if source.version is None else f"version {source.version}"
    return f"'{source.slug}' ({version})"


def http_error_message(status: int | None, name: str, source: DatasetSource, doing: str = "downloading",
                       anonymous: bool = False) -> str:
    """The one line for Kaggle's HTTP error `status` while `doing` dataset `name`; `anonymous`: the request
    carried no credentials, so a refusal asks for a login."""
    what = f"dataset {describe(source)}"
    if anonymous and status in (401, 403):
        return (
            f"Kaggle needs a login for {what} (it answered HTTP {status} to an anonymous request): "
            f"{CREDENTIALS_HELP}; {SAMPLE_HINT}"
        )
    if status == 401:
        return (
            f"Kaggle refused the credentials while {doing} {what} (HTTP 401): "
            f"{CREDENTIALS_HELP}; {SAMPLE_HINT}"
        )
    if status == 403:
        return (
            f"Kaggle denied access to {what} (HTTP 403): sign in at "
            f"https://www.kaggle.com/datasets/{source.slug} with the account of your credentials "
            f"and accept the dataset's terms, then run the stage again; {SAMPLE_HINT}"
        )
    if status == 404:
        return (
            f"{what} was not found on Kaggle (HTTP 404): check slug and version of "
            f"download.datasets.{name} in params.yaml"
        )
    if status == 429:
        return f"Kaggle is rate-limiting downloads of {what} (HTTP 429): wait a while and run the stage again"
    if status is not None and status >= 500:
        return (
            f"Kaggle had a server error sending {what} (HTTP {status}): run the stage again later; "
            f"{SAMPLE_HINT}"
        )
    return f"downloading {what} failed (HTTP {status}): run the stage again; {SAMPLE_HINT}"


@contextlib.contextmanager
def kaggle_errors(name: str, source: DatasetSource, doing: str, anonymous: bool = False) -> Iterator[None]:
    """Turn what a kaggle client call raises into one UserError line, built from status codes and
    types: the client's exception text can carry URLs, server replies or headers, so it is never shown.
    `anonymous`: the client sends no credentials (kaggle_login found none)."""
    import requests
    import urllib3.exceptions

    network_hint = f"check the internet connection and run the stage again; {SAMPLE_HINT}"
    try:
        yield
    except requests.exceptions.HTTPError as error:
        raise UserError(http_error_message(http_status(error), name, source, doing, anonymous)) from None
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as error:
        raise UserError(
            f"{doing} dataset {describe(source)} failed: connection lost or refused "
            f"({type(error).__name__}); {network_hint}"
        ) from None
    except ValueError:
        # download_file raises ValueError when fewer bytes arrived than announced.
        raise UserError(
            f"{doing} dataset {describe(source)} failed: the file arrived incomplete; {network_hint}"
        ) from None
    except OSError as error:
        raise UserError(
            f"{doing} dataset {describe(source)} failed writing under {RAW_DIR}: "
            f"{error.strerror or type(error).__name__}"
        ) from None


def iso_utc(value) -> str | None:
    """A datetime from the client as ISO 8601 UTC (seconds), or None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def dataset_info(api, name: str, source: DatasetSource, metadata_optional: bool = False) -> DatasetProvenance:
    """What Kaggle says about the dataset, before it is downloaded: the version that will be received
    (the pinned one, or the current one), its date, title, licence and size. The kaggle client's
    GetDataset call (what `kaggle datasets status --format` uses).

    Anonymous, Kaggle may refuse this call while it serves the download (the kaggle CLI lets `datasets
    download` go anonymously, not `datasets status`). With `metadata_optional` (the download stage) such a
    refusal gives only what params.yaml pins and one printed line: the download then decides, and its own
    refusal asks for a login; the data matters more than its record. The plan, which exists for the metadata
    (sizes for the disk check), keeps the refusal as its error."""
    import requests

    anonymous = auth_of(api) == ANONYMOUS
    with kaggle_errors(name, source, "looking up", anonymous), client_output(secrets_of(api)):
        try:
            dataset = _get_dataset(api, source)
        except requests.exceptions.HTTPError as error:
            if not (metadata_optional and anonymous and http_status(error) in (401, 403)):
                raise
            return _without_metadata(source, http_status(error))
    return _provenance(dataset, source)


def _without_metadata(source: DatasetSource, status: int) -> DatasetProvenance:
    """The record of `source` when Kaggle refused its metadata to an anonymous request: what params.yaml
    pins, and one printed line saying what the record will lack."""
    lacking = "no date, size or licence" + ("" if source.version is not None else ", nor which version arrived")
    print(f"Kaggle gives no metadata on dataset {describe(source)} to an anonymous request (HTTP {status}): "
          f"downloading it without; metrics/download.json records {lacking}", flush=True)
    return DatasetProvenance(slug=source.slug, images=0, version_requested=source.version, version=source.version)


def _get_dataset(api, source: DatasetSource):
    """The client's GetDataset call for `source`: kagglesdk's ApiDataset."""
    from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

    request = ApiGetDatasetRequest()
    request.owner_slug, request.dataset_slug = source.slug.split("/", 1)
    with api.build_kaggle_client() as kaggle:
        return kaggle.datasets.dataset_api_client.get_dataset(request)


def _provenance(dataset, source: DatasetSource) -> DatasetProvenance:
    """The record of `source` from GetDataset's answer: the pinned version's date, or the current one's."""
    version = source.version if source.version is not None else (dataset.current_version_number or None)
    dates = {entry.version_number: entry.creation_date for entry in (dataset.versions or [])}
    updated = dates.get(version) if source.version is not None else dataset.last_updated
    return DatasetProvenance(
        slug=source.slug, images=0, version_requested=source.version, version=version,
        last_updated=iso_utc(updated),
        title=dataset.title or None, license=dataset.license_name or None, total_bytes=dataset.total_bytes,
    )
