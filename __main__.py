"""dropship: a Docker Compose app on one server, from one `pulumi up`."""

from pathlib import Path

from dropship.config import read_settings
from dropship.program import build

project_dir = Path(__file__).parent
build(read_settings(project_dir), project_dir=project_dir)
