"""The example shop's API and worker."""
