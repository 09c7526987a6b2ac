"""dropship: a Docker Compose app on one server, from one `pulumi up`."""

from pathlib import Path

from dropship.config import read_settings

project_dir = Path(__file__).parent
settings = read_settings(project_dir)
# After the settings: a refused configuration fails before the providers' SDKs load.
from dropship.program import build  # noqa: E402

build(settings, project_dir=project_dir)
