"""The web pages (Jinja2 templates) and their static files: plain CSS and ES modules, no build."""

from pathlib import Path

WEB_DIR = Path(__file__).parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
