"""DigitalOcean's monitoring for a stack: an uptime check per URL with its alerts, and droplet alerts."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi
import pulumi_digitalocean as digitalocean


@dataclass(frozen=True, kw_only=True)
class Slack:
    channel: str
    url: pulumi.Output[str]
    """The incoming webhook (secret)."""


@dataclass(frozen=True, kw_only=True)
class AlertsArgs:
    resource_name: str
    urls: tuple[str, ...]
    droplet_id: pulumi.Input[str]
    emails: tuple[str, ...]
    slack: Slack | None
    cpu_percent: int
    memory_percent: int
    disk_percent: int
    window: str
    latency_ms: int
    certificate_days: int


@dataclass(frozen=True)
class _UptimeRule:
    kind: str
    """In the alert's name: down, slow, certificate."""
    type: str
    threshold: int | None
    comparison: str | None
    period: str


DROPLET_METRICS = {
    "cpu": ("v1/insights/droplet/cpu", "CPU"),
    "memory": ("v1/insights/droplet/memory_utilization_percent", "memory"),
    "disk": ("v1/insights/droplet/disk_utilization_percent", "disk"),
}


class Alerts(pulumi.ComponentResource):
    policies: pulumi.Output[list[str]]
    """The names of the alert policies created, as DigitalOcean shows them."""

    def __init__(self, name: str, args: AlertsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:Alerts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        uptime_slacks = (
            [digitalocean.UptimeAlertNotificationSlackArgs(channel=args.slack.channel, url=args.slack.url)] if args.slack else []
        )
        monitor_slacks = [digitalocean.MonitorAlertAlertsSlackArgs(channel=args.slack.channel, url=args.slack.url)] if args.slack else []
        notification = digitalocean.UptimeAlertNotificationArgs(emails=list(args.emails), slacks=uptime_slacks)
        names: list[str] = []

        for index, url in enumerate(args.urls):
            host = urlsplit(url).hostname or url
            https = url.startswith("https://")
            check = digitalocean.UptimeCheck(
                f"{name}-check-{index}",
                name=f"{args.resource_name} {host}",
                target=url,
                type="https" if https else "http",
                enabled=True,
                opts=child,
            )
            rules = [
                _UptimeRule("down", "down", None, None, "2m"),
                _UptimeRule("slow", "latency", args.latency_ms, "greater_than", "5m"),
            ]
            if https:
                rules.append(_UptimeRule("certificate", "ssl_expiry", args.certificate_days, "less_than", "5m"))
            for rule in rules:
                alert_name = f"{args.resource_name} {host} {rule.kind}"
                digitalocean.UptimeAlert(
                    f"{name}-{rule.kind}-{index}",
                    check_id=check.id,
                    name=alert_name,
                    type=rule.type,
                    threshold=rule.threshold,
                    comparison=rule.comparison,
                    period=rule.period,
                    notifications=[notification],
                    opts=child,
                )
                names.append(alert_name)

        thresholds = {"cpu": args.cpu_percent, "memory": args.memory_percent, "disk": args.disk_percent}
        for kind, (metric, label) in DROPLET_METRICS.items():
            description = f"{args.resource_name}: {label} above {thresholds[kind]}% for {args.window}"
            digitalocean.MonitorAlert(
                f"{name}-{kind}",
                type=metric,
                compare="GreaterThan",
                value=thresholds[kind],
                window=args.window,
                entities=[args.droplet_id],
                description=description,
                enabled=True,
                alerts=digitalocean.MonitorAlertAlertsArgs(emails=list(args.emails), slacks=monitor_slacks),
                opts=child,
            )
            names.append(description)
        self.policies = pulumi.Output.from_input(names)
        self.register_outputs({"policies": self.policies})
