"""dropship's Pulumi components, one per module."""
