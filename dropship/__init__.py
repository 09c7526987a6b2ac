"""dropship: a Docker Compose app on one server, from one `pulumi up`."""
