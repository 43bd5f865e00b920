"""The official kaggle client, set up for this project: imported quietly, pointed at its endpoint, logged in,
and kept from printing secrets. Used by the download stage and by the real run's plan (stages/plan.py),
through stages/images/kaggle_datasets.py for the dataset calls.

The login is the client's own, in its order: an access token (KAGGLE_API_TOKEN, its value or a file it
names; ~/.kaggle/access_token), a legacy key (kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY), the OAuth login of
`kaggle auth login` (~/.kaggle/credentials.json, refreshed when expired); with none of them, anonymous
requests, as the kaggle CLI makes for public datasets. Whatever the client prints is scrubbed of every
credential it holds or could read.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import sys
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
    "~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY (tokens and keys: https://www.kaggle.com/settings/api)"
)
# How the client authenticated (its AuthMethod names), as metrics/download.json records it; never who.
AUTH_NAMES = {"ACCESS_TOKEN": "access_token", "LEGACY_API_KEY": "legacy_api_key", "OAUTH": "oauth"}
ANONYMOUS = "anonymous"
# Where the client finds an access token (kagglesdk's get_access_token_from_env names its source so).
TOKEN_PLACES = {"KAGGLE_API_TOKEN": "KAGGLE_API_TOKEN", "access_token": "~/.kaggle/access_token"}


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
    """Whatever the client prints inside, scrubbed of `secrets` and of its misleading advice (_ScrubbedLines)."""
    stream = _ScrubbedLines(sys.stdout, secrets)
    try:
        with contextlib.redirect_stdout(stream):
            yield
    finally:
        stream.flush()


def access_token_found() -> tuple[str | None, str | None]:
    """The access token the client would use, and where it found it (KAGGLE_API_TOKEN, its value or the file
    it names; ~/.kaggle/access_token): the client's own lookup, so the two never disagree."""
    from kagglesdk.kaggle_env import get_access_token_from_env

    try:
        return get_access_token_from_env()
    except OSError:     # an unreadable token file: the client fails on it as well, with its own words
        return None, None


def oauth_login() -> dict:
    """What `kaggle auth login` stored (refresh_token, access_token, username, ...), {} when none is readable."""
    from kagglesdk.kaggle_creds import KaggleCredentials

    try:
        stored = json.loads(Path(KaggleCredentials.DEFAULT_CREDENTIALS_FILE).expanduser().read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def secrets_of(api=None) -> set[str]:
    """Every credential value the client may hold, read or send, and its HTTP Basic form: the legacy key, the
    access token (KAGGLE_API_TOKEN, the file it names, ~/.kaggle/access_token), the OAuth login's tokens (a
    refreshed one is in the client's config), whether or not the client used or accepted them."""
    config = (getattr(api, "config_values", None) or {}) if api is not None else {}
    oauth = oauth_login()
    user = str(config.get("username") or os.environ.get("KAGGLE_USERNAME", ""))
    key = str(config.get("key") or os.environ.get("KAGGLE_KEY", ""))
    values = {key, os.environ.get("KAGGLE_KEY", ""), os.environ.get("KAGGLE_API_TOKEN", ""),
              access_token_found()[0] or "", *(str(config.get(k) or "") for k in ("token", "api_token")),
              *(str(oauth.get(k) or "") for k in ("refresh_token", "access_token"))}
    secrets = {value for value in values if len(value) >= 4}
    if user and key:
        secrets.add(base64.b64encode(f"{user}:{key}".encode()).decode())
    # Short names would mangle ordinary words; usernames are public anyway.
    secrets |= {name for name in (user, str(oauth.get("username") or "")) if len(name) >= 6}
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


def checked_logins() -> list[str]:
    """The stored logins that authenticate() checks with Kaggle before using them: an access token (named by
    where it is) and the login of `kaggle auth login`; a legacy key is used unchecked. Read before
    authenticate(), which deletes an OAuth login that Kaggle refuses."""
    token, place = access_token_found()
    found = [TOKEN_PLACES.get(place, place)] if token else []
    if oauth_login().get("refresh_token"):
        found.append("the login of `kaggle auth login` (~/.kaggle/credentials.json)")
    return found


def refused_token_beside_key(api) -> str | None:
    """Where the access token lies that Kaggle refused when the client logged in with a legacy key instead, or
    None. The client's HTTP layer (kagglesdk's _try_fill_auth) sends any token it finds before the key, so
    every call would be refused; and a token found but not used is one Kaggle refused (tokens come first)."""
    token, place = access_token_found()
    if token and auth_of(api) == AUTH_NAMES["LEGACY_API_KEY"]:
        return TOKEN_PLACES.get(place, place)
    return None


def auth_of(api) -> str:
    """How the client authenticated: access_token, legacy_api_key, oauth, or anonymous (it found none)."""
    return AUTH_NAMES.get(str((api.config_values or {}).get(api.CONFIG_NAME_AUTH_METHOD)), ANONYMOUS)


def anonymous_notice(api) -> str:
    """The one line saying that the project goes on without credentials, and how to log in."""
    where = ""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        where = f" (KAGGLE_CONFIG_DIR is set: the client reads kaggle.json from {Path(api.config).parent})"
    return (f"no Kaggle credentials found{where}: going on anonymously, as the kaggle CLI does for public "
            f"datasets; if Kaggle refuses, {CREDENTIALS_HELP}")


def kaggle_login():
    """A KaggleApi that has found credentials; or, finding none at all, one that goes on anonymously (no
    Authorization header), as the kaggle CLI does for `datasets download`; or one UserError when Kaggle
    refused the credentials it found."""
    import requests

    use_endpoint_from_environment()
    # Before the client's first import: `import kaggle` authenticates too, deleting an OAuth login refused.
    checked = checked_logins()
    api = kaggle_api_class()()
    # Verbose mode prints request headers, Authorization included: never let it switch on.
    api.args = [arg for arg in api.args if arg not in ("--verbose", "-v")]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            api.authenticate()
    except SystemExit:
        # authenticate() prints its own help, then exit(1), when it has no credentials it can use: it goes
        # anonymous only when sys.argv[0] is the kaggle CLI, never as a library. We go on as the CLI would,
        # unless Kaggle refused what was there: then the user meant to log in.
        if checked:
            raise UserError(f"Kaggle did not accept {' or '.join(checked)} (expired or revoked?) and found no "
                            f"other credentials: {CREDENTIALS_HELP}; {SAMPLE_HINT}") from None
        print(anonymous_notice(api), flush=True)
    except requests.exceptions.HTTPError as error:
        raise UserError(
            f"Kaggle rejected the credentials (HTTP {http_status(error) or '?'}): {CREDENTIALS_HELP}; {SAMPLE_HINT}"
        ) from None
    except requests.exceptions.RequestException as error:
        raise UserError(
            f"could not reach Kaggle to check the credentials ({type(error).__name__}): check the "
            f"internet connection and run the stage again, {SAMPLE_HINT}"
        ) from None
    refused = refused_token_beside_key(api)
    if refused:
        raise UserError(f"Kaggle did not accept {refused} (expired or revoked?), which the kaggle client sends in "
                        f"place of the legacy key it also found: remove it or save a new token there; {SAMPLE_HINT}")
    # Pass on the client's warnings (e.g. kaggle.json readable by others), scrubbed.
    warnings = [line for line in printed.getvalue().splitlines() if line.startswith("Warning")]
    if warnings:
        with client_output(secrets_of(api)):
            print("\n".join(warnings))
    return api


def http_status(error) -> int | None:
    """The HTTP status of a requests HTTPError, None when it carries no response."""
    return error.response.status_code if error.response is not None else None
