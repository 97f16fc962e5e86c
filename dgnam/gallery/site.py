"""Write the gallery: the page, its script and style (package data, copied), the images and the data.

The data goes into ``data.js`` as a script (``window.DGNAM_PROBE = {...}``) as well as ``manifest.json``:
browsers refuse ``fetch`` of a local JSON file under ``file://``, but load a script beside the page.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image

from dgnam.io import atomic_write, atomic_write_json, atomic_write_text

STATIC = ("index.html", "app.js", "style.css")
FORMATS = {"png": ("PNG", {}), "jpg": ("JPEG", {"quality": 90})}


def _save(image: Image.Image, path: Path) -> None:
    fmt, options = FORMATS["jpg" if path.suffix == ".jpg" else "png"]
    atomic_write(path, lambda tmp: image.convert("RGB").save(tmp, format=fmt, **options))


def write_site(folder: str | Path, manifest: dict[str, Any], images: dict[str, Image.Image]) -> Path:
    """Write the gallery of ``manifest`` into ``folder`` (an empty staging folder: the caller publishes it).

    ``images`` maps each image path the manifest names (relative to the site, ``images/...``) to its
    picture. The page reads ``data.js``; ``manifest.json`` is the same data for programs.
    """
    folder = Path(folder)
    for relative, image in images.items():
        _save(image, folder / relative)
    for name in STATIC:
        text = resources.files("dgnam.gallery").joinpath("static", name).read_text(encoding="utf-8")
        atomic_write_text(text, folder / name)
    # "</" inside a string would end the script early; JSON allows the escaped form.
    payload = json.dumps(manifest, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    atomic_write_text(f"window.DGNAM_PROBE = {payload};\n", folder / "data.js")
    atomic_write_json(manifest, folder / "manifest.json")
    return folder
