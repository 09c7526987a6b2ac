"""The Spaces bucket a droplet's backups go to, with a lifecycle rule for retention and a key scoped to it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as digitalocean


@dataclass(frozen=True, kw_only=True)
class BackupBucketArgs:
    resource_name: str
    region: str
    retention_days: int
    protect: bool


class BackupBucket(pulumi.ComponentResource):
    bucket: pulumi.Output[str]
    endpoint: str
    access_key_id: pulumi.Output[str]
    secret_access_key: pulumi.Output[str]
    """Secret."""

    def __init__(self, name: str, args: BackupBucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:BackupBucket", name, None, opts)
        bucket = digitalocean.SpacesBucket(
            f"{name}-bucket",
            name=f"{args.resource_name}-backups",
            region=args.region,
            acl="private",
            lifecycle_rules=[
                digitalocean.SpacesBucketLifecycleRuleArgs(
                    enabled=True,
                    expiration=digitalocean.SpacesBucketLifecycleRuleExpirationArgs(days=args.retention_days),
                    abort_incomplete_multipart_upload_days=1,
                )
            ],
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        key = digitalocean.SpacesKey(
            f"{name}-key",
            name=f"{args.resource_name}-backups",
            grants=[digitalocean.SpacesKeyGrantArgs(bucket=bucket.name, permission="readwrite")],
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["secretKey"]),
        )
        self.bucket = bucket.name
        self.endpoint = f"https://{args.region}.digitaloceanspaces.com"
        self.access_key_id = key.access_key.apply(lambda k: k or "")
        self.secret_access_key = pulumi.Output.secret(key.secret_key.apply(lambda k: k or ""))
        self.register_outputs({"bucket": self.bucket, "endpoint": self.endpoint})
