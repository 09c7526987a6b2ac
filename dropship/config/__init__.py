"""The stack's settings: read once from Pulumi config, typed and validated."""

from dropship.config.errors import Problem, SettingsError
from dropship.config.flat_keys import load
from dropship.config.pulumi_config import read_settings
from dropship.config.sections import DropletServer, ExistingServer
from dropship.config.settings import Environment, Settings

__all__ = ["DropletServer", "Environment", "ExistingServer", "Problem", "Settings", "SettingsError", "load", "read_settings"]
