"""serve: a page to try the trained models on your own photos, in the browser (make serve).

    facegender serve                          every trained model of params.yaml, on http://127.0.0.1:8000
    facegender serve --models baseline transfer --port 8080

Open the printed address, drop or choose photos: each face found is boxed, and per face every model
gives P(class) with its verdict at evaluate.threshold, beside the heat map of where it looked. The
models load once, at the start; faces are found and cropped as predict finds them (the predict
section of params.yaml), scored on the engine each model was trained with. The page works offline
and listens on 127.0.0.1 (this computer only) unless --host says otherwise. Uploads are treated as
hostile (stages/serving/app.py); the scratch folder they pass through is removed when the server
stops (Ctrl-C, or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Sequence

from stages.common import cli
from stages.common.config import PARAMS_FILE, load_params
from stages.common.errors import UserError
from stages.modelkit.trained import find_trained, read_settings


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, with --help; every default is params.yaml's serve section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", metavar="MODEL",
                        help="model names from params.yaml's train section, .keras files or folders holding one "
                             "(default: every model of the train section that has been trained)")
    parser.add_argument("--host", help=f"the address to listen on (default serve.host in {PARAMS_FILE}); any other "
                                       "than 127.0.0.1 lets whoever reaches it upload photos")
    parser.add_argument("--port", type=int, help=f"the port (default serve.port in {PARAMS_FILE}); 0: any free one")
    parser.add_argument("--max-upload-mb", type=float, help="the largest photo accepted, in MB (default "
                                                            f"serve.max_upload_mb in {PARAMS_FILE})")
    parser.add_argument("--max-requests", type=int, help="photos in the server at once; more are told to retry "
                                                         f"(default serve.max_requests in {PARAMS_FILE})")
    return parser.parse_args(argv)


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this computer (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def model_paths(asked: Sequence[str] | None, names: Sequence[str], seed: int) -> tuple[list[tuple[str, Path]], list[str]]:
    """([(name, model file)], names not trained yet): the models asked for (each must exist), or every model
    of params.yaml's train section that has been trained."""
    if asked:
        return [(Path(spec).stem if spec.endswith((".keras", ".tflite")) else Path(spec).name,
                 find_trained(spec, names, seed)) for spec in asked], []
    found, missing = [], []
    for name in names:
        try:
            found.append((name, find_trained(name, names, seed)))
        except UserError:
            missing.append(name)
    if not found:
        raise UserError(f"no trained model in models/ for any of {', '.join(names)}: run `make run` (or dvc repro) "
                        "first, or give --models with a .keras file")
    return found, missing


async def serve_until_stopped(app, host: str, port: int, models: Sequence[str], scratch: Path) -> None:
    """Listen until Ctrl-C or SIGTERM, printing the address first (the real port, when 0 was asked for)."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as error:
            raise UserError(f"cannot listen on {host}:{port} ({error.strerror}); give another --port "
                            f"(or serve.port in {PARAMS_FILE})") from None
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        print(f"serving {', '.join(models)} on http://{shown}:{bound_port}/ (uploads pass through {scratch}, "
              "removed on exit; Ctrl-C stops)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_params()
    section = params.serve
    host = args.host or section.host
    port = section.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: give a port from 0 to 65535")
    max_upload_mb = args.max_upload_mb or section.max_upload_mb
    max_requests = args.max_requests or section.max_requests
    if max_upload_mb <= 0 or max_requests < 1:
        raise UserError("--max-upload-mb must be above 0 and --max-requests at least 1")
    settings = read_settings()
    found, missing = model_paths(args.models, params.model_names, params.seeds[0])
    if missing:
        print(f"serve: not trained yet, left out: {', '.join(missing)} (dvc repro trains them)", file=sys.stderr)
    if not is_loopback(host):
        print(f"warning: listening on {host}: anyone who can reach this port can upload photos and use the models; "
              "use 127.0.0.1 unless you mean it", file=sys.stderr)

    cli.quiet_tensorflow()
    from stages.analysis.heatmaps import Explainer
    from stages.common.distribute import cpu_share
    from stages.images.faces import detector
    from stages.modelkit.trained import load_trained
    from stages.serving.app import Limits, make_app, server_names
    from stages.serving.photos import PhotoOptions, analyse_photo

    threshold = params.evaluate.threshold
    models = [load_trained(path, settings, cpu_share(), name) for name, path in found]
    explainers = [Explainer(trained.model, trained.size, settings.explain_method, threshold=threshold)
                  if trained.model is not None else None for trained in models]     # an export has no heat maps
    detector()    # the face detector loads now, not at the first photo
    options = PhotoOptions(settings.max_pixels, settings.faces, threshold)
    about = {"models": [{"name": trained.name, "file": str(trained.path)} for trained in models],
             "classes": models[0].classes, "threshold": threshold}
    limits = Limits(round(max_upload_mb * 2**20), max_requests)
    with tempfile.TemporaryDirectory(prefix="facegender-serve-") as scratch:
        app = make_app(partial(analyse_photo, models=models, explainers=explainers, options=options),
                       about, limits, Path(scratch), server_names(host))
        asyncio.run(serve_until_stopped(app, host, port, [trained.name for trained in models], Path(scratch)))
    print("serve: stopped", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main, stage=False)
