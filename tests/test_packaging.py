"""The package as a wheel installs it: every subpackage and the templates, rendering with no `templates:` setting."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import REPO

RENDER_FROM_THE_WHEEL = """
import json, sys
from datetime import datetime, timezone
from newsletter.links import Signer
from newsletter.models import Digest, Subscriber
from newsletter.render import Renderer, shipped_templates
now = datetime(2026, 3, 13, 7, 30, tzinfo=timezone.utc)
digest = Digest(Subscriber(id="ada", email="ada@example.org", name="Ada", topics=("graphs",)), (), now, now, now, 0, 0)
email = Renderer(shipped_templates(), sender_name="Paper Digest", search_url="https://x.org/?q={query}").render(
    digest, Signer("k", "https://digest.example.org", "digest@example.org").links_for("ada"))
print(json.dumps({"templates": str(shipped_templates()), "html": email.html[:20000], "text": email.text}))
"""


def build_wheel(out: Path) -> Path:
    # From a copy: building writes build/ and *.egg-info next to the sources.
    source = out.parent / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "var", "tests", "bench", "build", "*.egg-info",
                                                               "__pycache__", "preview"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, capture_output=True, text=True)
    (wheel,) = out.glob("newsletter-*.whl")
    return wheel


def test_the_wheel_holds_every_package_and_the_templates(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    source_packages = {str(init.parent.relative_to(REPO)) for init in (REPO / "newsletter").rglob("__init__.py")}
    assert {f"{package}/__init__.py" for package in source_packages} <= names, "a subpackage is not packaged"
    assert {"newsletter/templates/digest.mjml.j2", "newsletter/templates/digest.txt.j2",
            "newsletter/py.typed"} <= names
    shipped = {str(path.relative_to(REPO)) for path in (REPO / "newsletter").rglob("*")
               if path.is_file() and "__pycache__" not in path.parts}
    assert shipped <= names, f"left out of the wheel: {sorted(shipped - names)}"


def test_a_non_editable_install_renders_with_its_shipped_templates(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", RENDER_FROM_THE_WHEEL], cwd=tmp_path, env=env, check=True,
                          capture_output=True, text=True)
    shown = json.loads(done.stdout)
    assert Path(shown["templates"]).is_relative_to(site), "rendered with the templates inside the wheel"
    assert "No new papers matched your topics" in shown["text"]
    assert "<html" in shown["html"] and "Manage preferences" in shown["html"]
