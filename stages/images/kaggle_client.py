"""The official kaggle client, set up for this project: imported quietly, pointed at its endpoint, and kept
from printing secrets. The login is stages/images/kaggle_login.py's; the dataset calls are
stages/images/kaggle_datasets.py's. Used by the download stage and by the real run's plan (stages/plan.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from stages.common.errors import UserError

SAMPLE_HINT = (
    "or use the offline sample: set download.source: sample in params.yaml "
    "(or dvc exp run -S download.source=sample)"
)
# Every way the pinned client (kaggle 2.2.5 / kagglesdk 0.1.38) logs in, in the order it tries them.
CREDENTIALS_HELP = (
    "log in with `kaggle auth login`, KAGGLE_API_TOKEN or ~/.kaggle/access_token, or a legacy key in "
    "~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY (the files in $KAGGLE_CONFIG_DIR when it is set; "
    "tokens and keys: https://www.kaggle.com/settings/api)"
)


def config_folder() -> Path:
    """The client's config folder, where the stored logins are: $KAGGLE_CONFIG_DIR when set, else the client's
    own choice (~/.kaggle; on Linux, $XDG_CONFIG_HOME/kaggle or ~/.config/kaggle when ~/.kaggle does not exist)."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser()
    home = Path("~/.kaggle").expanduser()
    if home.exists() or not sys.platform.startswith("linux"):
        return home
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path("~/.config").expanduser()) / "kaggle"


# The variables the client logs in with (its other logins are files in the home folder).
LOGIN_VARIABLES = ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY")


@contextlib.contextmanager
def no_logins_in_sight(folder: Path) -> Iterator[None]:
    """Within the block: an empty home folder, none of LOGIN_VARIABLES, and KAGGLE_CONFIG_DIR naming `folder`."""
    changed = {name: os.environ.get(name) for name in (*LOGIN_VARIABLES, "HOME", "KAGGLE_CONFIG_DIR")}
    with tempfile.TemporaryDirectory(prefix="kaggle-import-") as empty_home:
        try:
            for name in LOGIN_VARIABLES:
                os.environ.pop(name, None)
            os.environ.update({"HOME": empty_home, "KAGGLE_CONFIG_DIR": str(folder)})
            yield
        finally:
            for name, value in changed.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def kaggle_api_class():
    """Import the client's KaggleApi class, with no side effects on the user's logins.

    `import kaggle` logs in at once (kaggle/__init__.py): it would check a token of ~/.kaggle with Kaggle
    whatever KAGGLE_CONFIG_DIR says, delete an OAuth login Kaggle refuses, and print its own help when it
    finds none. It is imported with no logins in sight and its output discarded; stages/images/kaggle_login.py
    logs in afterwards. The class fixes its config folder on import: config_folder().
    """
    sink = io.StringIO()
    folder = config_folder()
    try:
        with no_logins_in_sight(folder), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise UserError(
            "the kaggle package is not installed in this environment; install the project's "
            f"requirements, {SAMPLE_HINT}"
        ) from None
    except OSError as error:
        # The client creates its config folder at import time.
        raise UserError(
            f"the kaggle client could not set up its config folder {folder} ({error.strerror}); "
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
    """Whatever the client prints inside, scrubbed of `secrets` and of its misleading advice (_ScrubbedLines)."""
    stream = _ScrubbedLines(sys.stdout, secrets)
    try:
        with contextlib.redirect_stdout(stream):
            yield
    finally:
        stream.flush()


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


def http_status(error) -> int | None:
    """The HTTP status of a requests HTTPError, None when it carries no response."""
    return error.response.status_code if error.response is not None else None
