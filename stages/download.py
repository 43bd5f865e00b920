"""DVC stage `download`: fill data/raw/<name>/ for each dataset in params.yaml download.datasets.

`download.source: kaggle` fetches each dataset with the official kaggle client; `sample` writes the
seeded offline stand-in (stages/sample.py). Every dataset is written into a temporary folder beside
its final place and checked against prepare.splits; only when all of them are complete do they
replace data/raw/<name>/, so a failed or interrupted run leaves the previous data exactly as it was.

Credentials never reach the output: errors are rebuilt from status codes and exception types, never
from the client's exception text, and whatever the client prints is scrubbed of the secrets it holds.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import re
import shutil
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, Sequence

from stages import cli
from stages.config import PARAMS_FILE, RAW_DIR, DatasetSource, Params, PrepareParams, load_params
from stages.errors import UserError
from stages.fsutil import staged_dir
from stages.images import find_class_folders, iter_image_files

# The kaggle client downloads into this hidden sub-folder of the staging folder: hidden folders are
# skipped by the layout check, and it is removed before the staging folder replaces data/raw/<name>/.
_DOWNLOAD_SUBDIR = ".kaggle-download"

SAMPLE_HINT = (
    "or use the offline sample: set download.source: sample in params.yaml "
    "(or dvc exp run -S download.source=sample)"
)
CREDENTIALS_HELP = (
    "set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN) in the environment, "
    "or save your API token as ~/.kaggle/kaggle.json (create one at https://www.kaggle.com/settings/api)"
)


# ---------------------------------------------------------------------------------------------
# Layout check (pure: raises UserError, touches nothing)


def check_layout(name: str, root: Path, prepare: PrepareParams, slug: str | None = None) -> int:
    """Check that dataset `name`, unpacked at `root`, has what prepare.splits expects of it.

    For every split reading this dataset, its class folders must be found (inside the split's
    `folder`) and each must hold at least one image. Returns the number of image files under root.
    """
    label = f"dataset '{name}'" + (f" ({slug})" if slug else "")
    for split_name, split in prepare.splits.items():
        if split.dataset != name:
            continue
        where = f"prepare.splits.{split_name}"
        fix = f"check {where}.folder and {where}.classes in params.yaml"
        if slug:
            fix += f" (and download.datasets.{name}.slug)"
        try:
            folders = find_class_folders(root, list(split.classes), within=split.folder)
        except FileNotFoundError as error:
            detail = _relative_to(str(error), root)
            raise UserError(f"{label} lacks what split '{split_name}' needs: {detail}; {fix}") from None
        for class_name, folder in folders.items():
            if next(iter_image_files(folder), None) is None:
                shown = folder.relative_to(root).as_posix()
                raise UserError(
                    f"{label}: class folder '{shown}' of split '{split_name}' holds no images; {fix}"
                )
    return sum(1 for _ in iter_image_files(root))


def _relative_to(message: str, root: Path) -> str:
    """Show paths in `message` relative to the (temporary) dataset root."""
    message = message.replace(f" under {root}", "")
    return message.replace(f"{root}{os.sep}", "").replace(str(root), ".")


# ---------------------------------------------------------------------------------------------
# Kaggle


def kaggle_ref(source: DatasetSource) -> str:
    """The dataset reference the kaggle client takes: owner/name, or owner/name/<version>."""
    return source.slug if source.version is None else f"{source.slug}/{source.version}"


def _describe(source: DatasetSource) -> str:
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
        self._secrets = sorted(secrets, key=len, reverse=True)
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
        for secret in self._secrets:
            line = line.replace(secret, "***")
        self._target.write(line)


@contextlib.contextmanager
def _client_output(secrets: set[str]) -> Iterator[None]:
    stream = _ScrubbedLines(sys.stdout, secrets)
    try:
        with contextlib.redirect_stdout(stream):
            yield
    finally:
        stream.flush()


def _secrets(api=None) -> set[str]:
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


def kaggle_login():
    """A KaggleApi that has found credentials, or one UserError saying how to give them."""
    import requests

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
        with _client_output(_secrets(api)):
            print("\n".join(warnings))
    return api


def _http_error_message(status: int | None, name: str, source: DatasetSource) -> str:
    what = f"dataset {_describe(source)}"
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


def download_kaggle(api, name: str, source: DatasetSource, root: Path, quiet: bool = False) -> None:
    """Download dataset `name` with the kaggle client and unpack it into the empty folder `root`."""
    import requests
    import urllib3.exceptions

    download_dir = root / _DOWNLOAD_SUBDIR
    network_hint = (
        f"check the internet connection and run the stage again; {SAMPLE_HINT}"
    )
    try:
        with _client_output(_secrets(api)):
            api.dataset_download_files(
                kaggle_ref(source), path=str(download_dir), force=True, quiet=quiet, unzip=False
            )
    # Messages are built here from status codes and types: the client's exception text can
    # carry URLs, server replies or headers, so it is never shown.
    except requests.exceptions.HTTPError as error:
        status = error.response.status_code if error.response is not None else None
        raise UserError(_http_error_message(status, name, source)) from None
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as error:
        raise UserError(
            f"downloading dataset {_describe(source)} failed: connection lost or refused "
            f"({type(error).__name__}); {network_hint}"
        ) from None
    except ValueError:
        # download_file raises ValueError when fewer bytes arrived than announced.
        raise UserError(
            f"downloading dataset {_describe(source)} failed: the file arrived incomplete; {network_hint}"
        ) from None
    except OSError as error:
        raise UserError(
            f"downloading dataset {_describe(source)} failed writing under {RAW_DIR}: "
            f"{error.strerror or type(error).__name__}"
        ) from None
    archives = sorted(download_dir.glob("*.zip"))
    if len(archives) != 1:
        raise UserError(
            f"downloading dataset {_describe(source)} gave {len(archives)} zip files, expected one; "
            "run the stage again"
        )
    unpack(archives[0], root, f"dataset {_describe(source)}")
    shutil.rmtree(download_dir)


def unpack(archive: Path, root: Path, what: str) -> None:
    """Extract a zip archive into root; a damaged archive is one UserError."""
    try:
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(root)  # drops absolute paths and '..' from member names
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError):
        raise UserError(
            f"the download of {what} is not a valid zip archive (damaged or truncated); "
            "run the stage again"
        ) from None


# ---------------------------------------------------------------------------------------------
# Stage


def fill_dataset(params: Params, name: str, root: Path, api=None, quiet: bool = False) -> int:
    """Write dataset `name` into the empty folder `root` and check it; returns its image count."""
    source = params.download.datasets[name]
    if params.download.source == "sample":
        from stages import sample

        sample.generate(name, root, params.download.sample)
        return check_layout(name, root, params.prepare)
    download_kaggle(api, name, source, root, quiet=quiet)
    return check_layout(name, root, params.prepare, slug=source.slug)


def download_all(params: Params, quiet: bool = False) -> None:
    """Fill every data/raw/<name>/; all are replaced together, and only when all succeeded."""
    api = kaggle_login() if params.download.source == "kaggle" else None
    reports = []
    with contextlib.ExitStack() as stack:
        for name, source in params.download.datasets.items():
            root = stack.enter_context(staged_dir(RAW_DIR / name))
            count = fill_dataset(params, name, root, api=api, quiet=quiet)
            origin = f"kaggle {_describe(source)}" if api is not None else "offline sample"
            reports.append(f"{name}: {count} image files from {origin} -> {(RAW_DIR / name).as_posix()}")
    for line in reports:
        print(line)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.download",
        description=(
            "Fill data/raw/<name>/ for each dataset in params.yaml download.datasets, from Kaggle "
            "(download.source: kaggle; needs credentials) or the offline sample (download.source: sample)."
        ),
    )
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help="params file (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    download_all(load_params(args.params), quiet=args.quiet)


if __name__ == "__main__":
    cli.run(main)
