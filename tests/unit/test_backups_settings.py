"""backups.*: which databases, when, where to; every problem named before any resource is registered."""

from __future__ import annotations

import pytest

from tests.unit.test_settings import config_of, load_stack, problems_of


def test_a_droplet_backs_up_the_named_postgres_daily_by_default() -> None:
    settings = load_stack("staging", *config_of("staging", backups__databases='["db"]'))
    assert settings.backups.databases == ("db",)
    assert (settings.backups.schedule, settings.backups.retention_days, settings.backups.bucket) == ("daily", 30, None)


@pytest.mark.parametrize("schedule", ["daily", "hourly", "*-*-* 03:30:00", "Mon..Fri 02:00", "*-*-* *:0/15", "Sun 04:00 UTC"])
def test_systemd_calendar_times_are_accepted(schedule: str) -> None:
    settings = load_stack("staging", *config_of("staging", backups__databases='["db"]', backups__schedule=schedule))
    assert settings.backups.schedule == schedule


@pytest.mark.parametrize(
    ("stack", "changes", "expected"),
    [
        (
            "staging",
            {"backups__databases": '["postgres"]'},
            "dropship:backups.databases[0]: no service 'postgres' in examples/shop/compose.yaml (its services: api, db, redis, web, worker)",
        ),
        (
            "staging",
            {"backups__databases": '["db"]', "backups__schedule": "every night"},
            "dropship:backups.schedule: expected a systemd calendar time such as daily, *-*-* 03:30:00 or Mon..Fri 02:00",
        ),
        ("staging", {"backups__retentionDays": "0"}, "dropship:backups.retentionDays: Input should be greater than or equal to 1"),
        (
            "local",
            {"backups__databases": '["db"]', "registry__password": None},
            "dropship:backups.bucket: required on an existing host: name an S3-compatible bucket",
        ),
        (
            "staging",
            {"backups__databases": '["db"]', "backups__bucket": "shop-backups"},
            "dropship:backups.endpoint: required with backups.bucket",
        ),
        ("staging", {"backups__failureUrl": "hc-ping.com/x/fail"}, "dropship:backups.failureUrl: expected an http:// or https:// URL"),
        ("staging", {"backups__bucket": "Shop_Backups"}, "dropship:backups.bucket: expected an S3 bucket name such as shop-backups"),
    ],
)
def test_bad_backup_settings_are_refused(stack: str, changes: dict[str, str | None], expected: str) -> None:
    assert expected in problems_of(stack, None, stack, **changes)


def test_the_bucket_secret_must_be_a_secret() -> None:
    message = problems_of("staging", backups__secretAccessKey="canary-9f3b2c-s3")
    assert "dropship:backups.secretAccessKey: stored in plain text; set it as a secret" in message
    assert "canary-9f3b2c-s3" not in message
