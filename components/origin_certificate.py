"""tls.mode cloudflare-origin: a certificate from Cloudflare's origin CA for the stack's hostnames, its key
made on the server (never in the state), and the zone's SSL mode strict, so that Cloudflare's proxy checks it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_cloudflare as cloudflare
from pulumi_command import remote

from dropship.remote import commands
from dropship.remote.target import SshTarget

VALIDITY_DAYS = 5475
"""Fifteen years: the longest Cloudflare's origin CA signs for."""


@dataclass(frozen=True, kw_only=True)
class OriginCertificateArgs:
    target: SshTarget
    user: str
    """The deploy user: owns the app's directory, where the key and the certificate are."""
    app_dir: str
    hostnames: tuple[str, ...]
    zone_id: pulumi.Input[str]
    after: tuple[pulumi.Resource, ...] = ()


class OriginCertificate(pulumi.ComponentResource):
    installed: remote.Command
    """Done once cert.pem and key.pem are in the app's tls directory."""

    def __init__(self, name: str, args: OriginCertificateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:OriginCertificate", name, None, opts)
        connection = args.target.as_user(args.user)
        key = remote.Command(
            f"{name}-key",
            add_previous_output_in_env=False,
            connection=connection,
            create=commands.origin_key(args.app_dir, args.hostnames),
            triggers=[args.target.host_id],
            opts=args.target.options(self, list(args.after)),
        )
        certificate = cloudflare.OriginCaCertificate(
            f"{name}-certificate",
            csr=key.stdout,
            hostnames=list(args.hostnames),
            request_type="origin-ecc",
            requested_validity=VALIDITY_DAYS,
            opts=pulumi.ResourceOptions(parent=self),
        )
        cloudflare.ZoneSetting(
            f"{name}-ssl-strict",
            zone_id=args.zone_id,
            setting_id="ssl",
            value="strict",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.installed = remote.Command(
            f"{name}-install",
            add_previous_output_in_env=False,
            connection=connection,
            create=commands.install_origin_cert(args.app_dir),
            stdin=certificate.certificate,
            triggers=[args.target.host_id, certificate.certificate],
            opts=args.target.options(self, [key]),
        )
        self.register_outputs({})
