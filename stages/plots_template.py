"""plots_template: write .dvc/plots/offline.html, the page `dvc plots show` / `dvc plots diff` fill, with vega inlined.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so without a network it stays
blank. This page carries the three libraries inside one <script>, taken from the pinned
`vl-convert-python` package (requirements.txt), so it needs no network at all. It is about a
megabyte, so it is generated, never committed: by `make env` (and so `make run` / `make test`), or by
hand with `facegender plots-page` (`python -m stages.plots_template`).

Having written the page, the command points DVC at it in .dvc/config.local, the untracked config
of this clone (what `dvc config --local plots.html_template plots/offline.html` does; the path is
relative to .dvc/). The committed .dvc/config names no template: a fresh clone, before any make,
gets DVC's own page from the CDN instead of an error about a page that is not there yet.

DVC fills the page by text replacement: `{plot_divs}` (required) becomes the plots, `{refresh_tag}`
an optional auto-refresh tag. The page leaves out `{scripts}`, where DVC would put its CDN tags.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Sequence

from stages.common import cli
from stages.common.atomic_files import write_text_atomic
from stages.common.errors import UserError

# Relative to the project's root, where commands run (an installed package has no checkout to find).
DVC_DIR = Path(".dvc")
TEMPLATE_SETTING = "plots/offline.html"    # plots.html_template: DVC reads it relative to .dvc/
TEMPLATE_PATH = DVC_DIR / TEMPLATE_SETTING
# The Vega-Lite line bundled: DVC's templates are Vega-Lite 5 specs (some use its legacy selection syntax).
VEGA_LITE_VERSION = "5.21"

# Every placeholder DVC's dvc_render.html.HTML.embed() replaces; the page must contain PLOTS_PLACEHOLDER.
PLOTS_PLACEHOLDER = "{plot_divs}"
DVC_PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- offline page for dvc plots show / diff, written by `python -m stages.plots_template`:
         %(versions)s, inlined (no network needed) -->
    <script type="text/javascript">
(function () {
%(bundle)s
})();
    </script>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def page_html(bundle: str, versions: str = "vega, vega-lite, vega-embed") -> str:
    """The page DVC fills, with `bundle` (JavaScript that sets window.vegaEmbed) inlined.

    The bundle runs inside a function, so its top-level names cannot collide with the `var spec`
    of each plot DVC adds. It must not end the <script> element early or contain a placeholder
    DVC would replace.
    """
    if re.search(r"</script", bundle, re.IGNORECASE) or "<!--" in bundle:
        raise ValueError("the JavaScript bundle contains '</script' or '<!--': it cannot be inlined")
    for placeholder in DVC_PLACEHOLDERS:
        if placeholder in bundle or placeholder in versions:
            raise ValueError(f"the JavaScript bundle contains DVC's placeholder {placeholder}")
    if "vegaEmbed" not in bundle:
        raise ValueError("the JavaScript bundle does not define vegaEmbed")
    if "-->" in versions:
        raise ValueError("versions must not end the HTML comment")
    page = PAGE % {"bundle": bundle, "versions": versions}
    assert PLOTS_PLACEHOLDER in page
    return page


def vega_bundle(vega_lite_version: str = VEGA_LITE_VERSION) -> tuple[str, str]:
    """vega-embed, vega-lite and vega as one script from vl-convert-python, and their versions."""
    try:
        import vl_convert
    except ImportError as error:
        raise UserError("vl-convert-python is not installed: run `make env` "
                        "(or pip install -r requirements.txt)") from error
    bundle = vl_convert.javascript_bundle(vl_version=vega_lite_version)
    versions = (f"vega {vl_convert.get_vega_version()}, vega-lite {vega_lite_version}, "
                f"vega-embed {vl_convert.get_vega_embed_version()} (vl-convert-python)")
    return bundle, versions


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=TEMPLATE_PATH,
                        help=f"where to write the page (default: {TEMPLATE_PATH}; only the default is "
                             "set in .dvc/config.local)")
    args = parser.parse_args(argv)
    if args.output == TEMPLATE_PATH and not DVC_DIR.is_dir():
        raise UserError(f"no {DVC_DIR}/ in {Path.cwd()}: run this in the project's folder (where dvc.yaml is)")
    bundle, versions = vega_bundle()
    write_text_atomic(args.output, page_html(bundle, versions))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(args.output, 0o666 & ~umask)  # the temporary file it was renamed from was private (0600)
    print(f"wrote {args.output} ({versions})")
    if args.output == TEMPLATE_PATH:
        use_page_in_this_clone()


def use_page_in_this_clone(dvc_dir: Path = DVC_DIR) -> None:
    """plots.html_template = plots/offline.html in .dvc/config.local, through DVC's own config code."""
    from dvc.config import Config

    config = Config(dvc_dir=str(dvc_dir), validate=False)
    with config.edit("local") as local:
        local.setdefault("plots", {})["html_template"] = TEMPLATE_SETTING


if __name__ == "__main__":
    cli.run(main)
