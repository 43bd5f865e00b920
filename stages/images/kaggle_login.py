"""The Kaggle login, found once and the only one the client sends.

In the client's order: an access token (KAGGLE_API_TOKEN, its value or a file it names; else the config
folder's access_token), a legacy key (KAGGLE_USERNAME/KAGGLE_KEY, else the config folder's kaggle.json), the
OAuth login of `kaggle auth login` (the config folder's credentials.json, refreshed when expired); with none of
them, anonymous requests, as the kaggle CLI makes for public datasets. The config folder is $KAGGLE_CONFIG_DIR
when set, else the client's own (~/.kaggle). The pinned client (kaggle 2.2.5 / kagglesdk 0.1.38) reads only
kaggle.json from $KAGGLE_CONFIG_DIR, and its HTTP layer adds whatever it finds in ~/.kaggle: here every request
carries the one login found, and nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from stages.common.errors import UserError
from stages.images.kaggle_client import (CREDENTIALS_HELP, SAMPLE_HINT, client_output, config_folder, http_status,
                                         kaggle_api_class, use_endpoint_from_environment)

# How the client authenticated (its AuthMethod names), as metrics/download.json records it; never who.
AUTH_NAMES = {"ACCESS_TOKEN": "access_token", "LEGACY_API_KEY": "legacy_api_key", "OAUTH": "oauth"}
ANONYMOUS = "anonymous"
# The files of the config folder that hold logins: access tokens, the legacy key, the OAuth login.
TOKEN_FILES = ("access_token", "access_token.txt")
KEY_FILE = "kaggle.json"
OAUTH_FILE = "credentials.json"


def shown(path: Path) -> str:
    """A path as messages show it: ~/... under the home folder."""
    try:
        return "~/" + str(Path(path).relative_to(Path.home()))
    except ValueError:
        return str(path)


def read_token(path: Path) -> str | None:
    """A token file's text, stripped; None when missing, unreadable or empty."""
    try:
        return path.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def stored_token(folder: Path) -> tuple[str | None, str | None]:
    """An access token and where it was found: KAGGLE_API_TOKEN (its value, or the file it names), else the
    folder's access_token (or access_token.txt); (None, None) when there is none."""
    value = os.environ.get("KAGGLE_API_TOKEN")
    if value:
        return (read_token(Path(value)) if Path(value).exists() else value), "KAGGLE_API_TOKEN"
    for name in TOKEN_FILES:
        token = read_token(folder / name)
        if token:
            return token, shown(folder / name)
    return None, None


def stored_json(path: Path) -> dict:
    """A JSON object from a login file (kaggle.json, credentials.json), {} when none is readable."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


@dataclass(frozen=True)
class Login:
    """The one credential every request of the client carries (none: anonymous), and where it was found.
    auth: how, in metrics/download.json's words (AUTH_NAMES' values, or anonymous)."""
    auth: str
    where: str = ""
    username: str | None = None
    key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def session_auth(self):
        """The requests auth that sends it: a bearer token, HTTP Basic (username, key), or None."""
        from kagglesdk.kaggle_http_client import KaggleHttpClient

        if self.token:
            return KaggleHttpClient.BearerAuth(self.token)
        return (self.username, self.key) if self.key else None


def client_sending(api, login: Login):
    """A kagglesdk client whose requests carry `login` and nothing else. kagglesdk's own lookup (its HTTP
    client's _try_fill_auth) would add a token found in ~/.kaggle, or ~/.kaggle/kaggle.json when it has no
    other, whatever KAGGLE_CONFIG_DIR says: it is replaced by this login."""
    client = api.build_kaggle_client_with_params(args=api.args, response_processor=api.get_response_processor())
    http = client.http_client()

    def fill_auth():
        http._session.auth = login.session_auth()
        http._signed_in = http._session.auth is not None

    http._try_fill_auth = fill_auth
    return client


def token_owner(api, token: str) -> str | None:
    """The user an access token belongs to, if Kaggle says it is active (the client's own check); else None."""
    import requests
    from kagglesdk.security.types.oauth_service import IntrospectTokenRequest

    request = IntrospectTokenRequest()
    request.token = token
    with client_sending(api, Login(AUTH_NAMES["ACCESS_TOKEN"], token=token)) as kaggle:
        try:
            response = kaggle.security.oauth_client.introspect_token(request)
        except requests.exceptions.HTTPError as error:
            if http_status(error) in (400, 401, 403, 404):
                return None
            raise
    return response.username if response.active and response.username else None


def oauth_token(api, path: Path) -> tuple[str, str | None] | None:
    """The OAuth login's access token and user, refreshed (and saved back to `path`) when expired; None when
    Kaggle refuses its refresh token."""
    import requests
    from kagglesdk.kaggle_creds import KaggleCredentials

    with client_sending(api, Login(ANONYMOUS)) as kaggle:
        credentials = KaggleCredentials.load(client=kaggle, file_path=str(path))
        if credentials is None:
            return None
        # The client saves a refreshed token to ~/.kaggle/credentials.json alone: here, back where it was read.
        credentials.save = lambda: KaggleCredentials.save(credentials, str(path))
        try:
            return credentials.get_access_token(), credentials.get_username()
        except requests.exceptions.HTTPError as error:
            if http_status(error) == 401:
                return None
            raise


def find_login(api, folder: Path) -> tuple[Login, list[str]]:
    """The login, in the client's order: an access token Kaggle accepts, a legacy key (sent unchecked), the
    OAuth login; else anonymous. Also the stored logins Kaggle refused, named by where they are."""
    refused = []
    token, where = stored_token(folder)
    if token:
        owner = token_owner(api, token)
        if owner:
            return Login(AUTH_NAMES["ACCESS_TOKEN"], where, owner, token=token), refused
        refused.append(where)
    config = api.config_values
    if config.get(api.CONFIG_NAME_USER) and config.get(api.CONFIG_NAME_KEY):
        from_environment = os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")
        where = "KAGGLE_USERNAME/KAGGLE_KEY" if from_environment else shown(folder / KEY_FILE)
        return Login(AUTH_NAMES["LEGACY_API_KEY"], where, str(config[api.CONFIG_NAME_USER]),
                     key=str(config[api.CONFIG_NAME_KEY])), refused
    if stored_json(folder / OAUTH_FILE).get("refresh_token"):
        where = f"the login of `kaggle auth login` ({shown(folder / OAUTH_FILE)})"
        found = oauth_token(api, folder / OAUTH_FILE)
        if found and found[0]:
            return Login(AUTH_NAMES["OAUTH"], where, found[1], token=found[0]), refused
        refused.append(where)
    return Login(ANONYMOUS), refused


def use_login(api, login: Login) -> None:
    """Make `login` the api's: its config values say so (auth_of), and every client it builds sends it."""
    method = {name: method for method, name in AUTH_NAMES.items()}.get(login.auth)
    if method is not None:
        api.config_values[api.CONFIG_NAME_AUTH_METHOD] = method
    if login.token:
        api.config_values[api.CONFIG_NAME_TOKEN] = login.token
    if login.username:
        api.config_values[api.CONFIG_NAME_USER] = login.username
    api.build_kaggle_client = lambda: client_sending(api, login)


def secrets_of(api=None) -> set[str]:
    """Every credential value the client may hold, read or send, and its HTTP Basic form: the legacy keys, the
    access tokens (KAGGLE_API_TOKEN, the file it names, the token files), the OAuth logins' tokens (a refreshed
    one is in the client's config), in the config folder and, never sent but scrubbed all the same, in ~/.kaggle;
    whether or not they were used or accepted."""
    config = (getattr(api, "config_values", None) or {}) if api is not None else {}
    user = str(config.get("username") or os.environ.get("KAGGLE_USERNAME", ""))
    key = str(config.get("key") or os.environ.get("KAGGLE_KEY", ""))
    folder = config_folder()
    values = {key, os.environ.get("KAGGLE_KEY", ""), os.environ.get("KAGGLE_API_TOKEN", ""),
              stored_token(folder)[0] or "", *(str(config.get(k) or "") for k in ("token", "api_token"))}
    names = {user}
    for place in {folder, Path("~/.kaggle").expanduser()}:
        oauth, legacy = stored_json(place / OAUTH_FILE), stored_json(place / KEY_FILE)
        values |= {*(read_token(place / name) or "" for name in TOKEN_FILES),
                   *(str(oauth.get(k) or "") for k in ("refresh_token", "access_token")), str(legacy.get("key") or "")}
        names |= {str(oauth.get("username") or ""), str(legacy.get("username") or "")}
    secrets = {value for value in values if len(value) >= 4}
    if user and key:
        secrets.add(base64.b64encode(f"{user}:{key}".encode()).decode())
    # Short names would mangle ordinary words; usernames are public anyway.
    secrets |= {name for name in names if len(name) >= 6}
    return secrets


def auth_of(api) -> str:
    """How the client authenticated: access_token, legacy_api_key, oauth, or anonymous (it found none)."""
    return AUTH_NAMES.get(str((api.config_values or {}).get(api.CONFIG_NAME_AUTH_METHOD)), ANONYMOUS)


def anonymous_notice(folder: Path) -> str:
    """The one line saying that the project goes on without credentials, and how to log in; it names the login
    files of ~/.kaggle left unread because KAGGLE_CONFIG_DIR names another folder (`kaggle auth login` writes
    there whatever KAGGLE_CONFIG_DIR says)."""
    home = Path("~/.kaggle").expanduser()
    unread = [name for name in (*TOKEN_FILES, KEY_FILE, OAUTH_FILE) if folder != home and (home / name).is_file()]
    aside = (f"; ~/.kaggle holds {', '.join(unread)}, unread while KAGGLE_CONFIG_DIR names {shown(folder)}: "
             f"move {'it' if len(unread) == 1 else 'them'} there, or unset KAGGLE_CONFIG_DIR") if unread else ""
    return (f"no Kaggle credentials found (in the environment or {shown(folder)}){aside}: going on anonymously, "
            f"as the kaggle CLI does for public datasets; if Kaggle refuses, {CREDENTIALS_HELP}")


def kaggle_login():
    """A KaggleApi whose every request carries the one login found (find_login); finding none at all, one that
    goes on anonymously (no Authorization header), as the kaggle CLI does for `datasets download`; or one
    UserError when Kaggle refused the logins it found and there is no other."""
    import requests

    use_endpoint_from_environment()
    folder = config_folder()
    api = kaggle_api_class()()
    # Verbose mode prints request headers, Authorization included: never let it switch on.
    api.args = [arg for arg in api.args if arg not in ("--verbose", "-v")]
    api.config_dir, api.config = str(folder), str(folder / KEY_FILE)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            api.config_values = api.read_config_environment(api.read_config_file(quiet=True))
            login, refused = find_login(api, folder)
    except requests.exceptions.HTTPError as error:
        raise UserError(
            f"Kaggle rejected the credentials (HTTP {http_status(error) or '?'}): {CREDENTIALS_HELP}; {SAMPLE_HINT}"
        ) from None
    except requests.exceptions.RequestException as error:
        raise UserError(
            f"could not reach Kaggle to check the credentials ({type(error).__name__}): check the "
            f"internet connection and run the stage again, {SAMPLE_HINT}"
        ) from None
    if refused and login.auth == ANONYMOUS:
        raise UserError(f"Kaggle did not accept {' or '.join(refused)} (expired or revoked?) and found no "
                        f"other credentials: {CREDENTIALS_HELP}; {SAMPLE_HINT}")
    use_login(api, login)
    # Pass on the client's warnings (e.g. kaggle.json readable by others), scrubbed.
    lines = [line for line in printed.getvalue().splitlines() if line.startswith("Warning")]
    if refused:
        lines.append(f"Kaggle did not accept {' or '.join(refused)} (expired or revoked?): logging in with "
                     f"{login.where} instead")
    if login.auth == ANONYMOUS:
        lines.append(anonymous_notice(folder))
    if lines:
        with client_output(secrets_of(api)):
            print("\n".join(lines), flush=True)
    return api
