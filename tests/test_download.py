"""The download stage against a local fake of Kaggle's API (tests/fake_kaggle.py): no internet."""

from __future__ import annotations

import base64
import datetime
import json
import shutil
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kagglesdk import kaggle_env

from stages import download
from stages.common.config import parse_params
from stages.common.errors import UserError
from stages.contracts.provenance import Provenance
from stages.images import kaggle_client, kaggle_datasets, kaggle_login, offline_sample
from stages.images.reading import iter_image_files
from tests.fake_kaggle import (ISSUED_TOKEN, KEY, OAUTH_TOKEN, REFRESH_TOKEN, SECRETS, TEST_FILES, TOKEN,
                               TRAINVAL_FILES, USERNAME, make_archive, make_tree)
from tests.helpers import ROOT, hashes, run_cli, write_params

def raw_snapshot() -> dict[str, str]:
    """Every file under data/raw with its sha256: equal snapshots, same files and bytes."""
    return hashes(Path("data/raw"))


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def assert_one_line_error(code: int, err: str) -> str:
    assert code == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Good downloads


@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "progress"])
def test_download_replaces_raw_data(fake, creds, capsys, quiet):
    code = run_cli(download.main, ["--quiet"] if quiet else [])
    out, err = capsys.readouterr()

    assert code == 0, err
    raw = Path("data/raw")
    assert sorted(p.name for p in raw.iterdir()) == ["test", "trainval"]  # no staging leftovers
    for name, files in (("trainval", TRAINVAL_FILES), ("test", TEST_FILES)):
        assert sorted(hashes(raw / name)) == sorted(files)  # old files and the zip are gone
    assert (raw / "trainval/Train/Female/female0.jpg").stat().st_size > 0
    assert f"trainval: {len(TRAINVAL_FILES)} image files from kaggle '{fake.slugs['trainval']}'" in out
    assert f"test: {len(TEST_FILES)} image files" in out
    assert "version 4 (the latest at download time), updated 2021-04-15" in out

    # The metadata first, then the very version it named as current.
    owner, name = fake.slugs["trainval"].split("/")
    rpcs = [r["path"].rsplit("/", 1)[1] for r in fake.requests if r["method"] == "POST"]
    assert rpcs == ["GetDataset", "DownloadDataset"] * 2
    calls = fake.rpc_calls("datasets.DatasetApiService/DownloadDataset")
    assert calls[0]["body"] == {"ownerSlug": owner, "datasetSlug": name, "datasetVersionNumber": 4}
    assert fake.rpc_calls("datasets.DatasetApiService/GetDataset")[0]["body"] == {"ownerSlug": owner, "datasetSlug": name}
    assert calls[0]["auth"].startswith("Basic ")
    assert_no_secrets(out, err)


def test_provenance_records_what_was_received(fake, creds, capsys):
    started = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    assert run_cli(download.main, ["--quiet"]) == 0, capsys.readouterr().err
    text = Provenance.path.read_text()
    assert_no_secrets(text)
    provenance = Provenance.read(Provenance.path)
    assert provenance.source == "kaggle" and provenance.sample is None
    for name, files in (("trainval", TRAINVAL_FILES), ("test", TEST_FILES)):
        found = provenance.datasets[name]
        assert (found.slug, found.version_requested, found.version) == (fake.slugs[name], None, 4)
        assert found.last_updated == "2021-04-15T10:20:30Z"
        assert found.total_bytes == len(fake.datasets[fake.slugs[name]])
        assert found.images == sum(f.endswith(".jpg") for f in files)
        assert found.license == "CC0: Public Domain" and found.title.startswith("Title of")
        downloaded = datetime.datetime.fromisoformat(found.downloaded_at.replace("Z", "+00:00"))
        assert started <= downloaded <= datetime.datetime.now(datetime.timezone.utc)
    assert "version 4 (the latest at download time), updated 2021-04-15, downloaded " in provenance.describe("test")


def test_stale_staging_folders_are_removed(fake, creds, capsys):
    stale = Path("data/raw/.trainval.tmp-killed")
    (stale / "Train").mkdir(parents=True)

    assert run_cli(download.main, ["--quiet"]) == 0

    assert sorted(p.name for p in Path("data/raw").iterdir()) == ["test", "trainval"]


def test_version_is_requested(fake, creds, kaggle_params, capsys):
    params = kaggle_params
    params["download"]["datasets"]["trainval"]["version"] = 3
    write_params(params)

    assert run_cli(download.main, ["--quiet"]) == 0
    out, _ = capsys.readouterr()

    body = fake.rpc_calls("datasets.DatasetApiService/DownloadDataset")[0]["body"]
    assert body["datasetVersionNumber"] == 3
    assert "(version 3, updated 2021-03-15, downloaded " in out
    found = Provenance.read(Provenance.path).datasets["trainval"]
    assert (found.version_requested, found.version, found.last_updated) == (3, 3, "2021-03-15T10:20:30Z")
    assert Provenance.read(Provenance.path).datasets["test"].version == 4


def test_download_resumes_after_one_cut(fake, creds, capsys):
    fake.mode = "cut_once"

    assert run_cli(download.main, ["--quiet"]) == 0
    out, err = capsys.readouterr()

    assert sorted(hashes(Path("data/raw/trainval"))) == sorted(TRAINVAL_FILES)
    gets = fake.blob_gets()
    assert gets[1]["range"] and gets[1]["range"].startswith("bytes=")  # the client resumed
    assert_no_secrets(out, err)


@pytest.mark.parametrize("honour_range", [True, False], ids=["range", "no-range"])
def test_interrupted_download_resumes_on_the_next_run(fake, creds, capsys, honour_range):
    """A run whose download keeps breaking off fails and leaves data/raw as it was, but keeps the
    partial archive; the next run resumes it (Range from where it stopped) or, from a server that
    ignores Range, starts it over; either way the data arrives whole."""
    # The client writes in 1 MiB chunks and a broken read loses the chunk in hand: an archive of
    # 3 MiB cut at half leaves one chunk on disk, as a multi-gigabyte one leaves hundreds.
    source = make_tree(Path("../src-big"), TRAINVAL_FILES)
    (source / "padding.bin").write_bytes(np.random.default_rng(0).bytes(3 << 20))
    fake.add_dataset(fake.slugs["trainval"], make_archive(source))
    before = raw_snapshot()
    fake.mode = "cut"
    assert run_cli(download.main, ["--quiet"]) == 1
    assert raw_snapshot() == before
    partial = download.archive_folder("trainval", 4) / "gender-recognition-dataset.zip"
    size = len(fake.datasets[fake.slugs["trainval"]])
    assert 0 < partial.stat().st_size < size
    kept = partial.stat().st_size
    capsys.readouterr()

    fake.mode, fake.honour_range = "good", honour_range
    fake.requests.clear()
    assert run_cli(download.main, ["--quiet"]) == 0, capsys.readouterr().err
    # The redirect's GET opens the file; the client, finding its partial, asks for the rest.
    assert [get["range"] for get in fake.blob_gets() if "gender-recognition" in get["path"]] == [None, f"bytes={kept}-"]
    assert sorted(hashes(Path("data/raw/test"))) == sorted(TEST_FILES)
    assert hashes(Path("data/raw/trainval")) == hashes(unzipped(fake.datasets[fake.slugs["trainval"]], Path("expected")))
    assert partial.stat().st_size == len(fake.datasets[fake.slugs["trainval"]])     # complete, and kept


def test_a_rerun_unpacks_the_kept_archive_and_a_new_version_replaces_it(fake, creds, capsys):
    assert run_cli(download.main, []) == 0
    archive = download.archive_folder("trainval", 4) / "gender-recognition-dataset.zip"
    first = (archive.stat().st_ino, archive.stat().st_mtime_ns)
    recorded = Provenance.read(Provenance.path).datasets["trainval"].downloaded_at
    capsys.readouterr()
    shutil.rmtree("data/raw/trainval")          # as if a code change made DVC rerun the stage

    assert run_cli(download.main, []) == 0
    out = capsys.readouterr().out
    assert "Skipping, found more recently modified local copy" in out       # the client's own words
    assert (archive.stat().st_ino, archive.stat().st_mtime_ns) == first
    assert sorted(hashes(Path("data/raw/trainval"))) == sorted(TRAINVAL_FILES)
    assert Provenance.read(Provenance.path).datasets["trainval"].downloaded_at == recorded   # when it really came

    fake.versions[fake.slugs["trainval"]] = 5
    assert run_cli(download.main, ["--quiet"]) == 0
    assert sorted(path.name for path in download.DOWNLOADS_DIR.iterdir()) == ["test-v4", "trainval-v5"]
    assert Provenance.read(Provenance.path).datasets["trainval"].version == 5


def unzipped(archive: bytes, folder: Path) -> Path:
    import io
    import zipfile
    with zipfile.ZipFile(io.BytesIO(archive)) as handle:
        handle.extractall(folder)
    return folder


def test_damaged_archive_is_fetched_again_once(fake, creds, capsys):
    fake.mode = "corrupt_once"
    assert run_cli(download.main, ["--quiet"]) == 0, capsys.readouterr().err
    assert len(fake.blob_gets()) == 3       # trainval twice (the first failed its CRC check), test once
    assert sorted(hashes(Path("data/raw/trainval"))) == sorted(TRAINVAL_FILES)


def test_archive_damaged_twice_is_one_error_and_raw_untouched(fake, creds, capsys):
    before = raw_snapshot()
    fake.mode = "corrupt"
    code = run_cli(download.main, ["--quiet"])
    line = assert_one_line_error(code, capsys.readouterr().err)
    assert "is damaged" in line and "twice in a row" in line and fake.slugs["trainval"] in line
    assert raw_snapshot() == before
    assert not (download.archive_folder("trainval", 4) / "gender-recognition-dataset.zip").exists()


# ---------------------------------------------------------------------------------------------
# Every way the client logs in (tests/fake_kaggle.py's docstring), and none


def kaggle_folder(home: Path) -> Path:
    folder = home / ".kaggle"
    folder.mkdir(exist_ok=True)
    return folder


def oauth_login(home: Path, access_token: str, expires: str, refresh_token: str = REFRESH_TOKEN) -> None:
    """~/.kaggle/credentials.json as `kaggle auth login` writes it."""
    (kaggle_folder(home) / "credentials.json").write_text(json.dumps({
        "refresh_token": refresh_token, "access_token": access_token, "access_token_expiration": expires,
        "username": USERNAME, "scopes": []}))


def token_value(fake, home, env):
    env.setenv("KAGGLE_API_TOKEN", TOKEN)


def token_file_named(fake, home, env):
    (home / "my-token").write_text(TOKEN + "\n")
    env.setenv("KAGGLE_API_TOKEN", str(home / "my-token"))


def access_token_file(fake, home, env):
    (kaggle_folder(home) / "access_token").write_text(TOKEN + "\n")


def kaggle_json(fake, home, env):
    (kaggle_folder(home) / "kaggle.json").write_text(json.dumps({"username": USERNAME, "key": KEY}))
    (home / ".kaggle" / "kaggle.json").chmod(0o600)


def username_and_key(fake, home, env):
    env.setenv("KAGGLE_USERNAME", USERNAME)
    env.setenv("KAGGLE_KEY", KEY)


def oauth_valid(fake, home, env):
    fake.tokens.add(OAUTH_TOKEN)        # issued by an earlier refresh
    oauth_login(home, OAUTH_TOKEN, "2999-01-01T00:00:00+00:00")


def oauth_expired(fake, home, env):
    oauth_login(home, OAUTH_TOKEN, "2020-01-01T00:00:00+00:00")     # the fake no longer accepts it


BASIC = "Basic " + base64.b64encode(f"{USERNAME}:{KEY}".encode()).decode()
# way: (how it is given, the Authorization of the dataset calls, the login calls before them, metrics' auth)
LOGINS = {
    "KAGGLE_API_TOKEN": (token_value, f"Bearer {TOKEN}", ["IntrospectToken"], "access_token"),
    "KAGGLE_API_TOKEN-file": (token_file_named, f"Bearer {TOKEN}", ["IntrospectToken"], "access_token"),
    "access_token-file": (access_token_file, f"Bearer {TOKEN}", ["IntrospectToken"], "access_token"),
    "kaggle.json": (kaggle_json, BASIC, [], "legacy_api_key"),
    "KAGGLE_USERNAME-KAGGLE_KEY": (username_and_key, BASIC, [], "legacy_api_key"),
    "oauth-valid": (oauth_valid, f"Bearer {OAUTH_TOKEN}", [], "oauth"),
    "oauth-expired": (oauth_expired, f"Bearer {ISSUED_TOKEN}", ["GenerateAccessToken"], "oauth"),
}


@pytest.mark.parametrize("way", LOGINS)
def test_each_way_to_log_in(fake, clean_env, monkeypatch, capsys, way):
    log_in, authorization, login_calls, auth = LOGINS[way]
    log_in(fake, clean_env, monkeypatch)

    assert run_cli(download.main) == 0, capsys.readouterr().err     # not quiet: all the client prints
    out, err = capsys.readouterr()

    calls = [(r["path"].rsplit("/", 1)[1], r["auth"]) for r in fake.requests if r["method"] == "POST"]
    assert [name for name, _ in calls[:len(login_calls)]] == login_calls
    assert calls[len(login_calls):] == [("GetDataset", authorization), ("DownloadDataset", authorization)] * 2
    assert "no Kaggle credentials" not in out
    assert Provenance.read(Provenance.path).auth == auth
    assert_no_secrets(out, err, Provenance.path.read_text())


# KAGGLE_CONFIG_DIR names the folder of the stored logins: another account's files in ~/.kaggle are neither
# read nor sent. The fake accepts both accounts, so only what arrived tells them apart.
OTHER_USERNAME, OTHER_KEY, OTHER_TOKEN, OTHER_OAUTH = "bob-other-account", "k3y-other-999", "tok-other-888", "oat-other-777"
OTHER_SECRETS = (OTHER_USERNAME, OTHER_KEY, OTHER_TOKEN, OTHER_OAUTH, "ref-other-666")
BASIC_OTHER = "Basic " + base64.b64encode(f"{OTHER_USERNAME}:{OTHER_KEY}".encode()).decode()


def other_account_in_home(fake, home: Path) -> None:
    """~/.kaggle holding every login file, all another account's, each one the fake would accept."""
    folder = kaggle_folder(home)
    (folder / "kaggle.json").write_text(json.dumps({"username": OTHER_USERNAME, "key": OTHER_KEY}))
    (folder / "kaggle.json").chmod(0o600)
    (folder / "access_token").write_text(OTHER_TOKEN)
    (folder / "credentials.json").write_text(json.dumps({
        "refresh_token": "ref-other-666", "access_token": OTHER_OAUTH,
        "access_token_expiration": "2999-01-01T00:00:00+00:00", "username": OTHER_USERNAME, "scopes": []}))
    fake.tokens |= {OTHER_TOKEN, OTHER_OAUTH}


CONFIG_FOLDER_LOGINS = {   # what the config folder holds: (how, the Authorization of the dataset calls, auth)
    "kaggle.json": (kaggle_json, BASIC, "legacy_api_key"),
    "access_token": (access_token_file, f"Bearer {TOKEN}", "access_token"),
    "credentials.json": (oauth_expired, f"Bearer {ISSUED_TOKEN}", "oauth"),
    "nothing": (None, None, "anonymous"),
    "nothing, ~/.kaggle only a key": (None, None, "anonymous"),    # what kagglesdk falls back to, unasked
}


@pytest.mark.parametrize("holds", CONFIG_FOLDER_LOGINS)
def test_kaggle_config_dir_is_the_only_place_logins_come_from(fake, clean_env, tmp_path, monkeypatch, capsys,
                                                             holds):
    log_in, authorization, auth = CONFIG_FOLDER_LOGINS[holds]
    other_account_in_home(fake, clean_env)
    if holds.endswith("only a key"):
        for name in ("access_token", "credentials.json"):
            (clean_env / ".kaggle" / name).unlink()
    config_home = tmp_path / "ci"      # the helpers write into <home>/.kaggle: here, into ci/.kaggle
    config_home.mkdir()
    config = kaggle_folder(config_home)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    if log_in is None:
        fake.anonymous_rpcs = {"GetDataset", "DownloadDataset"}
    else:
        log_in(fake, config_home, monkeypatch)
    home_files = hashes(clean_env / ".kaggle")

    assert run_cli(download.main, ["--quiet"]) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()

    dataset_calls = [call["auth"] for call in fake.requests if "DatasetApiService" in call["path"]]
    assert dataset_calls == [authorization] * 4
    arrived = json.dumps(fake.requests)
    assert [secret for secret in OTHER_SECRETS if secret in arrived] == []
    assert BASIC_OTHER not in arrived
    assert Provenance.read(Provenance.path).auth == auth
    assert hashes(clean_env / ".kaggle") == home_files      # nothing refreshed or deleted there
    if holds == "credentials.json":     # the refreshed token is kept where the login is
        assert json.loads((config / "credentials.json").read_text())["access_token"] == ISSUED_TOKEN
    if log_in is None:     # the notice names what it left unread, and how to use it
        unread, them = (("kaggle.json", "it") if holds.endswith("only a key")
                        else ("access_token, kaggle.json, credentials.json", "them"))
        assert (f"no Kaggle credentials found (in the environment or {config}); ~/.kaggle holds {unread}, unread "
                f"while KAGGLE_CONFIG_DIR names {config}: move {them} there, or unset KAGGLE_CONFIG_DIR") in out
    assert_no_secrets(out, err)
    assert [secret for secret in OTHER_SECRETS if secret in out + err] == []


def test_expired_oauth_login_is_refreshed_with_its_refresh_token(fake, clean_env, monkeypatch, capsys):
    oauth_expired(fake, clean_env, monkeypatch)

    assert run_cli(download.main, ["--quiet"]) == 0, capsys.readouterr().err

    assert fake.rpc_calls("users.AccountService/GenerateAccessToken")[0]["body"]["refreshToken"] == REFRESH_TOKEN
    # The client keeps the new token for the next run.
    assert json.loads((clean_env / ".kaggle/credentials.json").read_text())["access_token"] == ISSUED_TOKEN


def test_secrets_cover_token_files_and_the_oauth_login(clean_env, monkeypatch):
    """Scrubbed even before the client reads them, and when Kaggle refuses them."""
    (kaggle_folder(clean_env) / "access_token").write_text(TOKEN)
    oauth_login(clean_env, OAUTH_TOKEN, "2020-01-01T00:00:00+00:00")
    assert {TOKEN, REFRESH_TOKEN, OAUTH_TOKEN, USERNAME} <= kaggle_login.secrets_of()

    (clean_env / "elsewhere").write_text(ISSUED_TOKEN)
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(clean_env / "elsewhere"))
    assert ISSUED_TOKEN in kaggle_login.secrets_of()


def test_anonymous_download_of_public_datasets(fake, capsys):
    fake.anonymous_rpcs = {"GetDataset", "DownloadDataset"}

    assert run_cli(download.main, ["--quiet"]) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()

    notice = [line for line in out.splitlines() if line.startswith("no Kaggle credentials found")]
    assert len(notice) == 1 and "going on anonymously" in notice[0] and "kaggle auth login" in notice[0]
    assert {r["auth"] for r in fake.requests if r["method"] == "POST"} == {None}
    provenance = Provenance.read(Provenance.path)
    assert provenance.auth == "anonymous" and provenance.datasets["trainval"].version == 4
    assert sorted(hashes(Path("data/raw/trainval"))) == sorted(TRAINVAL_FILES)


def test_anonymous_download_goes_on_without_the_metadata_kaggle_refuses(fake, kaggle_params, capsys):
    """Kaggle may serve a public dataset's archive, not its metadata, to an anonymous request: the data
    arrives, and the record says only what params.yaml pinned."""
    fake.anonymous_rpcs = {"DownloadDataset"}
    kaggle_params["download"]["datasets"]["test"]["version"] = 3
    write_params(kaggle_params)

    assert run_cli(download.main, ["--quiet"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out

    assert out.count("Kaggle gives no metadata on dataset") == 2 and "nor which version arrived" in out
    owner, name = fake.slugs["trainval"].split("/")
    downloads = [call["body"] for call in fake.rpc_calls("datasets.DatasetApiService/DownloadDataset")]
    assert downloads[0] == {"ownerSlug": owner, "datasetSlug": name}             # the latest, unnamed
    assert downloads[1]["datasetVersionNumber"] == 3
    provenance = Provenance.read(Provenance.path)
    assert (provenance.datasets["trainval"].version, provenance.datasets["test"].version) == (None, 3)
    assert provenance.datasets["trainval"].total_bytes is None and provenance.auth == "anonymous"
    assert sorted(hashes(Path("data/raw/test"))) == sorted(TEST_FILES)
    assert "version unknown (the latest at download time)" in out


@pytest.mark.parametrize("refusal", ["401", "403"])
def test_no_credentials_and_kaggle_refusing_anonymous_requests(fake, capsys, refusal):
    if refusal == "403":      # anonymous requests let in, then denied
        fake.anonymous_rpcs, fake.mode = {"GetDataset", "DownloadDataset"}, "403"
    before = raw_snapshot()

    code = run_cli(download.main, ["--quiet"])
    out, err = capsys.readouterr()

    line = assert_one_line_error(code, err)
    assert f"Kaggle needs a login for dataset '{fake.slugs['trainval']}'" in line
    assert f"(it answered HTTP {refusal} to an anonymous request)" in line
    for text in ("kaggle auth login", "KAGGLE_API_TOKEN", "~/.kaggle/access_token", "kaggle.json",
                 "KAGGLE_USERNAME/KAGGLE_KEY", "download.source=sample"):
        assert text in line
    assert "Authentication required" not in out + err  # the client's own help is not shown
    assert out.startswith("no Kaggle credentials found")
    assert {r["auth"] for r in fake.requests} == {None}
    assert raw_snapshot() == before
    assert not Provenance.path.exists()


def rejected_token(fake, home, env):
    env.setenv("KAGGLE_API_TOKEN", "wrong-" + TOKEN)


def rejected_token_file(fake, home, env):
    (kaggle_folder(home) / "access_token").write_text("wrong-" + TOKEN)


def rejected_oauth_login(fake, home, env):
    oauth_login(home, OAUTH_TOKEN, "2020-01-01T00:00:00+00:00", refresh_token="wrong-" + REFRESH_TOKEN)


@pytest.mark.parametrize("log_in, expected", [
    (rejected_token, ["did not accept KAGGLE_API_TOKEN", "kaggle auth login", "KAGGLE_USERNAME"]),
    (rejected_token_file, ["did not accept ~/.kaggle/access_token", "kaggle auth login", "KAGGLE_USERNAME"]),
    (rejected_oauth_login, ["did not accept the login of `kaggle auth login`", "KAGGLE_API_TOKEN"]),
], ids=["KAGGLE_API_TOKEN", "access_token-file", "oauth"])
def test_rejected_login_is_one_error_not_anonymous(fake, clean_env, monkeypatch, capsys, log_in, expected):
    log_in(fake, clean_env, monkeypatch)
    before = raw_snapshot()

    code = run_cli(download.main, ["--quiet"])
    out, err = capsys.readouterr()

    line = assert_one_line_error(code, err)
    assert [text for text in expected if text not in line] == []
    assert not fake.rpc_calls("datasets.DatasetApiService/GetDataset")
    assert "Invalid credentials" not in out and "anonymously" not in out
    assert raw_snapshot() == before
    assert_no_secrets(out, err)


def test_a_refused_token_beside_a_key_gives_way_to_the_key(fake, clean_env, monkeypatch, capsys):
    """The client's HTTP layer would send the refused token on every call; here the key goes, and one line
    names the token Kaggle refused."""
    rejected_token_file(fake, clean_env, monkeypatch)
    username_and_key(fake, clean_env, monkeypatch)

    assert run_cli(download.main, ["--quiet"]) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()

    assert [call["auth"] for call in fake.rpc_calls("datasets.DatasetApiService/GetDataset")] == [BASIC] * 2
    assert ("Kaggle did not accept ~/.kaggle/access_token (expired or revoked?): logging in with "
            "KAGGLE_USERNAME/KAGGLE_KEY instead") in out
    assert Provenance.read(Provenance.path).auth == "legacy_api_key"
    assert_no_secrets(out, err)


@pytest.mark.e2e
def test_importing_the_client_touches_no_login(fake, clean_env, monkeypatch):
    """`import kaggle` logs in at once: in a fresh process, with a token, a key and a refused OAuth login in
    ~/.kaggle, it would check the token with Kaggle and delete the OAuth login. kaggle_api_class imports it
    with no logins in sight: no request, every file as it was, and the process's environment unchanged."""
    access_token_file(fake, clean_env, monkeypatch)
    kaggle_json(fake, clean_env, monkeypatch)
    rejected_oauth_login(fake, clean_env, monkeypatch)
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    before = hashes(clean_env / ".kaggle")
    script = ("import os; from stages.images import kaggle_client as c; c.use_endpoint_from_environment(); "
              "before = dict(os.environ); c.kaggle_api_class(); assert dict(os.environ) == before")
    env = {**os.environ, kaggle_client.ENDPOINT_VARIABLE: fake.url, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr[-2000:]
    assert fake.requests == []
    assert hashes(clean_env / ".kaggle") == before


# ---------------------------------------------------------------------------------------------
# Failures leave data/raw as it was


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("401", ["HTTP 401", "KAGGLE_USERNAME", "download.source: sample"]),
        ("403", ["HTTP 403", "accept the dataset's terms", "https://www.kaggle.com/datasets/"]),
        ("404", ["HTTP 404", "download.datasets.trainval", "params.yaml"]),
        ("500", ["HTTP 500", "again later"]),
        ("cut", ["connection lost", "internet connection", "download.source: sample"]),
        ("garbage", ["not a valid zip archive"]),
    ],
)
def test_failed_download_leaves_raw_untouched(fake, creds, capsys, mode, expected):
    before = raw_snapshot()
    fake.mode = mode

    code = run_cli(download.main, ["--quiet"])
    out, err = capsys.readouterr()

    line = assert_one_line_error(code, err)
    assert fake.slugs["trainval"] in line
    for text in expected:
        assert text in line
    assert raw_snapshot() == before
    assert sorted(p.name for p in Path("data/raw").iterdir()) == ["test", "trainval"]
    assert not Provenance.path.exists()     # no record of a download that did not happen
    assert_no_secrets(out, err)


def test_cut_download_retries_quickly_and_hides_client_advice(fake, creds, capsys):
    fake.mode = "cut"
    before = raw_snapshot()

    code = run_cli(download.main)  # not quiet: the client's own retry messages are shown
    out, err = capsys.readouterr()

    assert code == 1
    assert len(fake.blob_gets()) == 6  # first try + the client's 5 retries, without the back-off sleeps
    assert "Retrying in" in out
    assert "Partial file saved" not in out and "resume by running" not in out
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: downloading dataset")
    assert raw_snapshot() == before
    assert_no_secrets(out, err)


def test_wrong_key_is_refused(fake, monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", "wrong-" + KEY)
    before = raw_snapshot()

    line = assert_one_line_error(run_cli(download.main, ["--quiet"]), capsys.readouterr().err)

    assert "HTTP 401" in line
    assert raw_snapshot() == before


def test_failure_on_second_dataset_keeps_first_as_well(fake, creds, capsys):
    del fake.datasets[fake.slugs["test"]]  # trainval downloads fine, test is 404
    before = raw_snapshot()

    line = assert_one_line_error(run_cli(download.main, ["--quiet"]), capsys.readouterr().err)

    assert fake.slugs["test"] in line and "download.datasets.test" in line
    assert raw_snapshot() == before


def test_unreachable_server(fake, creds, monkeypatch, capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for env in kaggle_env.KaggleEnv:
        monkeypatch.setitem(kaggle_env._env_to_endpoint, env, f"http://127.0.0.1:{port}")
    before = raw_snapshot()

    line = assert_one_line_error(run_cli(download.main, ["--quiet"]), capsys.readouterr().err)

    assert "connection lost or refused" in line
    assert raw_snapshot() == before


def test_bad_layout_names_the_params(fake, creds, tmp_path, capsys):
    incomplete = [f for f in TRAINVAL_FILES if not f.startswith("Train/Male/")]
    fake.add_dataset(fake.slugs["trainval"], make_archive(make_tree(tmp_path / "bad", incomplete)))
    before = raw_snapshot()

    line = assert_one_line_error(run_cli(download.main, ["--quiet"]), capsys.readouterr().err)

    assert "dataset 'trainval'" in line and fake.slugs["trainval"] in line
    assert "prepare.splits.train.folder" in line and "prepare.splits.train.classes" in line
    assert str(tmp_path) not in line  # no temporary paths
    assert raw_snapshot() == before


def test_help():
    with pytest.raises(SystemExit) as exit_:
        download.main(["--help"])
    assert exit_.value.code == 0


def test_version_reference(kaggle_params):
    params = parse_params(kaggle_params)
    source = params.download.datasets["trainval"]
    assert kaggle_datasets.kaggle_ref(source) == source.slug
    pinned = source.model_copy(update={"version": 7})
    assert kaggle_datasets.kaggle_ref(pinned) == f"{source.slug}/7"


# ---------------------------------------------------------------------------------------------
# Layout check


@pytest.fixture
def prepare_params(kaggle_params):
    return parse_params(kaggle_params).prepare


def test_layout_ok_counts_images(tmp_path, prepare_params):
    make_tree(tmp_path, TRAINVAL_FILES)
    assert download.check_layout("trainval", tmp_path, prepare_params) == len(TRAINVAL_FILES)


def test_layout_nested_folders_are_found(tmp_path, prepare_params):
    make_tree(tmp_path, [f"faces/faces/{f.removeprefix('faces/')}" for f in TEST_FILES])
    assert download.check_layout("test", tmp_path, prepare_params) == len(TEST_FILES)


def test_layout_missing_class_folder(tmp_path, prepare_params):
    make_tree(tmp_path, [f for f in TEST_FILES if "/woman/" not in f])
    with pytest.raises(UserError) as error:
        download.check_layout("test", tmp_path, prepare_params, slug="owner/faces")
    message = str(error.value)
    assert "dataset 'test' (owner/faces)" in message
    assert "['man', 'woman']" in message and "'faces'" in message
    assert "prepare.splits.test.folder" in message and "prepare.splits.test.classes" in message
    assert str(tmp_path) not in message


def test_layout_missing_split_folder(tmp_path, prepare_params):
    make_tree(tmp_path, [f for f in TRAINVAL_FILES if not f.startswith("Test/")])
    with pytest.raises(UserError, match=r"split 'val'.*prepare\.splits\.val\.folder"):
        download.check_layout("trainval", tmp_path, prepare_params)


def test_layout_empty_class_folder(tmp_path, prepare_params):
    make_tree(tmp_path, [f for f in TRAINVAL_FILES if not f.startswith("Train/Male/")])
    (tmp_path / "Train" / "Male").mkdir()
    (tmp_path / "Train" / "Male" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError) as error:
        download.check_layout("trainval", tmp_path, prepare_params)
    message = str(error.value)
    assert "'Train/Male'" in message and "holds no images" in message
    assert "prepare.splits.train" in message


# ---------------------------------------------------------------------------------------------
# Secrets stay out of the output


def test_verbose_client_cannot_print_headers(fake, creds, capsys):
    KaggleApi = kaggle_client.kaggle_api_class()
    KaggleApi.args = ["--verbose"]  # as VERBOSE=1 at import would set it (the fixture restores it)

    assert run_cli(download.main, ["--quiet"]) == 0
    out, err = capsys.readouterr()

    assert "Authorization" not in out + err
    assert_no_secrets(out, err)


def test_client_output_is_scrubbed(capsys):
    stream = kaggle_client._ScrubbedLines(sys.stdout, {KEY})
    stream.write(f"key is {KEY} here\nConnection error: ConnectionError: https://x/?sig={KEY}\n")
    stream.write("Partial file saved at: /tmp/x.zip\nError: ChunkedEncodingError: boom\nlast")
    stream.flush()
    out = capsys.readouterr().out
    assert out == "key is *** here\nConnection error: ConnectionError\nlast"


# ---------------------------------------------------------------------------------------------
# Offline sample


def test_sample_source(tmp_path, kaggle_params, monkeypatch, capsys):
    params = kaggle_params
    params["download"]["source"] = "sample"
    params["download"]["sample"].update(train_per_class=6, val_per_class=6, unlabeled=2, test_images=10)
    monkeypatch.chdir(tmp_path)
    write_params(params)
    (tmp_path / "data/raw/test").mkdir(parents=True)
    (tmp_path / "data/raw/test/MARKER").write_text("old")

    assert run_cli(download.main) == 0, capsys.readouterr().err
    out = capsys.readouterr().out

    assert "trainval:" in out and "offline sample" in out
    assert not (tmp_path / "data/raw/test/MARKER").exists()
    assert any((tmp_path / "data/raw/trainval").rglob("*.jpg"))
    # Exactly what the generator writes for download.sample in params.yaml, nothing else left.
    sample_params = parse_params(params).download.sample
    for name in ("trainval", "test"):
        offline_sample.generate(name, tmp_path / "expected" / name, sample_params)
        assert hashes(tmp_path / "data/raw" / name) == hashes(tmp_path / "expected" / name), name
    assert sorted(p.name for p in (tmp_path / "data/raw").iterdir()) == ["test", "trainval"]
    provenance = Provenance.read(tmp_path / Provenance.path)
    assert provenance.source == "sample" and provenance.sample == sample_params.model_dump()
    assert provenance.datasets["trainval"].version is None and provenance.datasets["trainval"].downloaded_at is None
    assert provenance.datasets["test"].images == len(list(iter_image_files(tmp_path / "data/raw/test")))
