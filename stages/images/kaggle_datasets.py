"""The official kaggle client, wrapped for this project: login, a dataset's metadata, errors as one line.

Credentials never reach the output: errors are rebuilt from status codes and exception types, never
from the client's exception text, and whatever the client prints is scrubbed of the secrets it holds.
Used by the download stage and by the real run's plan (stages/plan.py).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import io
import os
import re
import sys
from pathlib import Path
from typing import Iterator

from stages.common.config import RAW_DIR, DatasetSource
from stages.common.errors import UserError
from stages.contracts.provenance import DatasetProvenance

SAMPLE_HINT = (
    "or use the offline sample: set download.source: sample in params.yaml "
    "(or dvc exp run -S download.source=sample)"
)
CREDENTIALS_HELP = (
    "set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN) in the environment, "
    "or save your API token as ~/.kaggle/kaggle.json (create one at https://www.kaggle.com/settings/api)"
)


def kaggle_ref(source: DatasetSource) -> str:
    """The dataset reference the kaggle client takes: owner/name, or owner/name/<version>."""
    return source.slug if source.version is None else f"{source.slug}/{source.version}"


def describe(source: DatasetSource) -> str:
    version = "latest version" if source.version is None else f"version {source.version}"
    return f"'{source.slug}' ({version})"


def kaggle_api_class():
    """Import the client's KaggleApi class, discarding what `import kaggle` prints.

    kaggle/__init__.py authenticates at import time and prints its own help when it finds no
    credentials; we authenticate again ourselves, with our own message.
    """
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise UserError(
            "the kaggle package is not installed in this environment; install the project's "
            f"requirements, {SAMPLE_HINT}"
        ) from None
    except OSError as error:
        # The client creates its config folder at import time.
        raise UserError(
            f"the kaggle client could not set up its config folder ({error.strerror}); "
            "set KAGGLE_CONFIG_DIR to a writable folder"
        ) from None
    return KaggleApi


class _ScrubbedLines(io.TextIOBase):
    """A stdout stand-in for the client: forwards whole lines, minus secrets and misleading advice."""

    # The client's advice after a failed download does not hold here: the staging folder is removed.
    # Its final "Error: <exception text>" is replaced by our own one-line message.
    _DROP = re.compile(r"^\s*(Partial file saved at|You can resume by running|Download failed after|Error: )")
    # The client prints str(exception) when retrying; keep only the exception's type.
    _ERROR_LINE = re.compile(r"^(\s*Connection error: \w+): .*$")

    def __init__(self, target, secrets: set[str]) -> None:
        self._target = target
        self.secrets_of = sorted(secrets, key=len, reverse=True)
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._emit(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = ""
        self._target.flush()

    def _emit(self, line: str) -> None:
        if self._DROP.match(line):
            return
        line = self._ERROR_LINE.sub(r"\1", line)
        for secret in self.secrets_of:
            line = line.replace(secret, "***")
        self._target.write(line)


@contextlib.contextmanager
def client_output(secrets: set[str]) -> Iterator[None]:
    stream = _ScrubbedLines(sys.stdout, secrets)
    try:
        with contextlib.redirect_stdout(stream):
            yield
    finally:
        stream.flush()


def secrets_of(api=None) -> set[str]:
    """Every credential value the client may hold, and its HTTP Basic form."""
    values = {os.environ.get(key, "") for key in ("KAGGLE_KEY", "KAGGLE_API_TOKEN")}
    user = os.environ.get("KAGGLE_USERNAME", "")
    key = os.environ.get("KAGGLE_KEY", "")
    if api is not None:
        config = getattr(api, "config_values", {}) or {}
        values |= {str(config.get(k) or "") for k in ("key", "token", "api_token")}
        user = str(config.get("username") or user)
        key = str(config.get("key") or key)
    secrets = {value for value in values if len(value) >= 4}
    if user and key:
        secrets.add(base64.b64encode(f"{user}:{key}".encode()).decode())
    if len(user) >= 6:  # short names would mangle ordinary words; usernames are public anyway
        secrets.add(user)
    return secrets


# A Kaggle-compatible endpoint in place of https://api.kaggle.com (a mirror or proxy; the tests' local
# server when a test runs the pipeline through DVC, whose stages are separate processes).
ENDPOINT_VARIABLE = "FACEGENDER_KAGGLE_ENDPOINT"


def use_endpoint_from_environment() -> str | None:
    """Point the client at $FACEGENDER_KAGGLE_ENDPOINT when it is set; returns the endpoint used."""
    endpoint = os.environ.get(ENDPOINT_VARIABLE)
    if not endpoint:
        return None
    from kagglesdk import kaggle_env

    for env in kaggle_env.KaggleEnv:
        kaggle_env._env_to_endpoint[env] = endpoint.rstrip("/")
    return endpoint


def kaggle_login():
    """A KaggleApi that has found credentials, or one UserError saying how to give them."""
    import requests

    use_endpoint_from_environment()
    KaggleApi = kaggle_api_class()
    api = KaggleApi()
    # Verbose mode prints request headers, Authorization included: never let it switch on.
    api.args = [arg for arg in api.args if arg not in ("--verbose", "-v")]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            api.authenticate()
    except SystemExit:
        # authenticate() prints its own help, then exit(1), when it finds no credentials.
        where = ""
        if os.environ.get("KAGGLE_CONFIG_DIR"):
            where = f" (KAGGLE_CONFIG_DIR is set: the client reads kaggle.json from {Path(api.config).parent})"
        problem = "no Kaggle credentials found"
        if os.environ.get("KAGGLE_API_TOKEN"):
            problem = "Kaggle did not accept KAGGLE_API_TOKEN (expired or revoked?) and found no other credentials"
        raise UserError(f"{problem}: {CREDENTIALS_HELP}{where}; {SAMPLE_HINT}") from None
    except requests.exceptions.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise UserError(
            f"Kaggle rejected the credentials (HTTP {status}): {CREDENTIALS_HELP}; {SAMPLE_HINT}"
        ) from None
    except requests.exceptions.RequestException as error:
        raise UserError(
            f"could not reach Kaggle to check the credentials ({type(error).__name__}): check the "
            f"internet connection and run the stage again, {SAMPLE_HINT}"
        ) from None
    # Pass on the client's warnings (e.g. kaggle.json readable by others), scrubbed.
    warnings = [line for line in printed.getvalue().splitlines() if line.startswith("Warning")]
    if warnings:
        with client_output(secrets_of(api)):
            print("\n".join(warnings))
    return api


def http_error_message(status: int | None, name: str, source: DatasetSource) -> str:
    what = f"dataset {describe(source)}"
    if status == 401:
        return (
            f"Kaggle refused the credentials while downloading {what} (HTTP 401): "
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
def kaggle_errors(name: str, source: DatasetSource, doing: str) -> Iterator[None]:
    """Turn what a kaggle client call raises into one UserError line, built from status codes and
    types: the client's exception text can carry URLs, server replies or headers, so it is never shown."""
    import requests
    import urllib3.exceptions

    network_hint = f"check the internet connection and run the stage again; {SAMPLE_HINT}"
    try:
        yield
    except requests.exceptions.HTTPError as error:
        status = error.response.status_code if error.response is not None else None
        raise UserError(http_error_message(status, name, source)) from None
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


def dataset_info(api, name: str, source: DatasetSource) -> DatasetProvenance:
    """What Kaggle says about the dataset, before it is downloaded: the version that will be received
    (the pinned one, or the current one), its date, title, licence and size. The kaggle client's
    GetDataset call (what `kaggle datasets status --format` uses)."""
    from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

    request = ApiGetDatasetRequest()
    request.owner_slug, request.dataset_slug = source.slug.split("/", 1)
    with kaggle_errors(name, source, "looking up"), client_output(secrets_of(api)):
        with api.build_kaggle_client() as kaggle:
            dataset = kaggle.datasets.dataset_api_client.get_dataset(request)
    version = source.version if source.version is not None else (dataset.current_version_number or None)
    dates = {entry.version_number: entry.creation_date for entry in (dataset.versions or [])}
    updated = dates.get(version) if source.version is not None else dataset.last_updated
    return DatasetProvenance(
        slug=source.slug, images=0, version_requested=source.version, version=version,
        last_updated=iso_utc(updated),
        title=dataset.title or None, license=dataset.license_name or None, total_bytes=dataset.total_bytes,
    )
