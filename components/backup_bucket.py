"""The Spaces bucket a droplet's backups go to, with a key scoped to it that cannot destroy them: versioned
(an overwrite keeps the previous version), deletes denied to everyone by the bucket's policy, and retention
by lifecycle rules alone."""

from __future__ import annotations

import json
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
            versioning=digitalocean.SpacesBucketVersioningArgs(enabled=True),
            lifecycle_rules=[
                digitalocean.SpacesBucketLifecycleRuleArgs(
                    enabled=True,
                    expiration=digitalocean.SpacesBucketLifecycleRuleExpirationArgs(days=args.retention_days),
                    noncurrent_version_expiration=digitalocean.SpacesBucketLifecycleRuleNoncurrentVersionExpirationArgs(
                        days=args.retention_days
                    ),
                    abort_incomplete_multipart_upload_days=1,
                )
            ],
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        digitalocean.SpacesBucketPolicy(
            f"{name}-policy",
            region=args.region,
            bucket=bucket.name,
            policy=bucket.name.apply(no_deletes),
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


def no_deletes(bucket: str) -> str:
    """A bucket policy that denies deleting a backup or one of its versions to every key, the host's too."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "BackupsAreRemovedByLifecycleOnly",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                }
            ],
        },
        sort_keys=True,
    )
