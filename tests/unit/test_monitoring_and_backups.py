"""Alerts and backups under Pulumi's mocks, with exact inputs: production has alerts by default, previews never."""

from __future__ import annotations

import json

import pytest

from dropship.remote import commands
from tests.unit.program import CANARY, Run, run_program, stack_config, without_secrets
from tests.unit.test_settings import STAGING_SECRETS, problems_of
from tests.unit.test_stacks import DROPLET_ID, LOCAL_SECRETS, local_config

SLACK_URL = f"https://hooks.slack.com/services/T000/B000/{CANARY}"
NOTIFY = {"emails": ["ops@example.com"], "slacks": [{"channel": "#ops", "url": SLACK_URL}]}


@pytest.fixture(scope="module")
def production() -> Run:
    config = dict(stack_config("production"))
    config["dropship:alerts.slackChannel"] = "#ops"
    return run_program("production", config, {**STAGING_SECRETS, "alerts.slackWebhookUrl": SLACK_URL})


def test_every_url_has_an_uptime_check_with_down_slow_and_certificate_alerts(production: Run) -> None:
    checks = {r.name: r.inputs for r in production.of_type("digitalocean:index/uptimeCheck:UptimeCheck")}
    assert checks == {
        "alerts-check-0": {
            "name": "dropship-production app.example.com",
            "target": "https://app.example.com",
            "type": "https",
            "enabled": True,
        },
        "alerts-check-1": {
            "name": "dropship-production www.example.com",
            "target": "https://www.example.com",
            "type": "https",
            "enabled": True,
        },
    }
    alerts = {r.name: r.inputs for r in production.of_type("digitalocean:index/uptimeAlert:UptimeAlert")}
    assert alerts["alerts-down-0"] == {
        "checkId": "alerts-check-0-id",
        "name": "dropship-production app.example.com down",
        "type": "down",
        "period": "2m",
        "notifications": [NOTIFY],
    }
    assert alerts["alerts-slow-1"] == {
        "checkId": "alerts-check-1-id",
        "name": "dropship-production www.example.com slow",
        "type": "latency",
        "threshold": 2000,
        "comparison": "greater_than",
        "period": "5m",
        "notifications": [NOTIFY],
    }
    assert alerts["alerts-certificate-0"] == {
        "checkId": "alerts-check-0-id",
        "name": "dropship-production app.example.com certificate",
        "type": "ssl_expiry",
        "threshold": 14,
        "comparison": "less_than",
        "period": "5m",
        "notifications": [NOTIFY],
    }
    assert len(alerts) == 6


def test_the_droplet_has_cpu_memory_and_disk_alerts(production: Run) -> None:
    monitors = {r.name: r.inputs for r in production.of_type("digitalocean:index/monitorAlert:MonitorAlert")}
    expected = {
        "alerts-cpu": ("v1/insights/droplet/cpu", 80, "CPU"),
        "alerts-memory": ("v1/insights/droplet/memory_utilization_percent", 90, "memory"),
        "alerts-disk": ("v1/insights/droplet/disk_utilization_percent", 85, "disk"),
    }
    assert monitors == {
        name: {
            "type": metric,
            "compare": "GreaterThan",
            "value": value,
            "window": "5m",
            "entities": ["424242"],
            "description": f"dropship-production: {label} above {value}% for 5m",
            "enabled": True,
            "alerts": NOTIFY,
        }
        for name, (metric, value, label) in expected.items()
    }


def test_the_slack_webhook_is_a_secret_everywhere_and_the_policies_are_an_output(production: Run) -> None:
    for resource in production.resources:
        assert CANARY not in str(without_secrets(resource.wire)), resource.name
    assert "dropship-production: CPU above 80% for 5m" in production.outputs["alertPolicies"]
    assert "dropship-production app.example.com down" in production.outputs["alertPolicies"]


def test_staging_has_none_unless_asked_and_a_preview_never() -> None:
    staging = run_program("staging", stack_config("staging"), STAGING_SECRETS)
    assert staging.of_type("digitalocean:index/uptimeCheck:UptimeCheck") == []
    config = {**stack_config("staging"), "dropship:alerts.enabled": "true", "dropship:alerts.emails": '["ops@example.com"]'}
    assert len(run_program("staging", config, STAGING_SECRETS).of_type("digitalocean:index/monitorAlert:MonitorAlert")) == 3
    preview = run_program("pr-42", config, STAGING_SECRETS)
    assert preview.of_type("digitalocean:index/monitorAlert:MonitorAlert") == []
    assert "alertPolicies" not in preview.outputs


@pytest.mark.parametrize(
    ("stack", "changes", "expected"),
    [
        ("production", {"alerts__emails": None}, "dropship:alerts.emails: alerts need a recipient: set alerts.emails"),
        ("staging", {"alerts__cpuPercent": "150"}, "dropship:alerts.cpuPercent: Input should be less than or equal to 100; got '150'"),
        ("staging", {"alerts__diskPercent": "0"}, "dropship:alerts.diskPercent: Input should be greater than or equal to 1; got '0'"),
        (
            "staging",
            {"alerts__slackWebhookUrl": "http://hooks.slack.com/x", "alerts__slackChannel": "#ops"},
            "dropship:alerts.slackWebhookUrl: expected an https:// URL such as https://hooks.slack.com/services/T000/B000/XXXX",
        ),
        ("staging", {"alerts__slackChannel": "#ops"}, "dropship:alerts.slackWebhookUrl: Slack alerts need both"),
        (
            "staging",
            {"alerts__emails": '["ops at example"]'},
            "dropship:alerts.emails[0]: expected an email address such as ops@example.com",
        ),
        ("local", {"alerts__enabled": "true", "registry__password": None}, "dropship:alerts.enabled: alerts are DigitalOcean's"),
    ],
)
def test_bad_alert_settings_are_refused(stack: str, changes: dict[str, str | None], expected: str) -> None:
    assert expected in problems_of(stack, None, stack, **changes)


def test_a_slack_url_in_plain_text_is_refused() -> None:
    message = problems_of("staging", alerts__slackWebhookUrl=SLACK_URL, alerts__slackChannel="#ops")
    assert "dropship:alerts.slackWebhookUrl: stored in plain text; set it as a secret" in message
    assert CANARY not in message


def test_a_droplets_backups_get_a_private_versioned_spaces_bucket_nobody_deletes_from_and_a_key_scoped_to_it() -> None:
    config = {**stack_config("production"), "dropship:backups.databases": '["db"]', "dropship:backups.retentionDays": "14"}
    run = run_program("production", config, STAGING_SECRETS)
    bucket = run.named("backups-bucket")
    assert bucket.inputs == {
        "name": "dropship-production-backups",
        "region": "fra1",
        "acl": "private",
        "versioning": {"enabled": True},
        "lifecycleRules": [
            {
                "enabled": True,
                "expiration": {"days": 14},
                "noncurrentVersionExpiration": {"days": 14},
                "abortIncompleteMultipartUploadDays": 1,
            }
        ],
    }
    assert bucket.protect is True
    # Retention is the lifecycle rules' alone: no key, the host's included, deletes a backup or a version of it.
    policy = run.named("backups-policy")
    assert (policy.inputs["bucket"], policy.inputs["region"], policy.protect) == ("dropship-production-backups", "fra1", True)
    assert json.loads(policy.inputs["policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "BackupsAreRemovedByLifecycleOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
                "Resource": ["arn:aws:s3:::dropship-production-backups", "arn:aws:s3:::dropship-production-backups/*"],
            }
        ],
    }
    key = run.named("backups-key")
    assert key.inputs == {
        "name": "dropship-production-backups",
        "grants": [{"bucket": "dropship-production-backups", "permission": "readwrite"}],
    }
    assert "secretKey" in key.additional_secret_outputs
    assert run.outputs["backupBucket"] == "dropship-production-backups"
    staging = run_program("staging", {**stack_config("staging"), "dropship:backups.databases": '["db"]'}, STAGING_SECRETS)
    assert staging.named("backups-bucket").protect is False


def test_the_backup_timers_run_the_uploaded_script_as_the_deploy_user_with_the_keys_only_in_a_600_file() -> None:
    config = {**stack_config("production"), "dropship:backups.databases": '["db"]', "dropship:backups.schedule": "*-*-* 03:30:00"}
    run = run_program("production", config, STAGING_SECRETS)
    script = run.named("backups-script")
    assert script.inputs["remotePath"] == "/srv/shop/.dropship/backup.py"
    assert script.inputs["connection"]["user"] == "deploy"
    env = run.named("backups-env")
    assert env.inputs["create"] == commands.write_backup_env("/srv/shop")
    assert env.inputs["stdin"] == commands.render_env(
        {
            "RCLONE_CONFIG_DROPSHIP_TYPE": "s3",
            "RCLONE_CONFIG_DROPSHIP_PROVIDER": "DigitalOcean",
            "RCLONE_CONFIG_DROPSHIP_ENDPOINT": "https://fra1.digitaloceanspaces.com",
            "RCLONE_CONFIG_DROPSHIP_ACCESS_KEY_ID": "DO00SPACESKEY",
            "RCLONE_CONFIG_DROPSHIP_SECRET_ACCESS_KEY": f"{CANARY}-spaces-secret",
            "DROPSHIP_BACKUP_BUCKET": "dropship-production-backups",
        }
    )
    assert without_secrets(env.wire)["stdin"] == "[secret]" and env.inputs["logging"] == "none"
    timers = run.named("backups-timers")
    install = commands.install_backups("/srv/shop", "shop", "deploy", "*-*-* 03:30:00", DROPLET_ID, ["db"])
    assert (timers.inputs["create"], timers.inputs["stdin"]) == (install.command, install.stdin)
    # Its delete is the same script's `remove` (a delete runs with the step's stdin), for this droplet only.
    assert timers.inputs["delete"] == commands.remove_backups("/srv/shop", "shop", DROPLET_ID)
    assert timers.inputs["delete"].startswith("bash -c '. /dev/stdin' install-backups.sh remove /srv/shop shop ")
    assert timers.inputs["triggers"] == [DROPLET_ID]
    assert timers.inputs["connection"]["user"] == "root"
    assert {"backups-script", "backups-env"} <= {d.rsplit("::", 1)[-1] for d in timers.depends_on}
    for resource in run.resources:
        assert f"{CANARY}-spaces-secret" not in str(without_secrets(resource.wire)), resource.name


def test_the_outputs_say_how_to_see_the_last_backup_and_restore_it() -> None:
    run = run_program("staging", {**stack_config("staging"), "dropship:backups.databases": '["db"]'}, STAGING_SECRETS)
    lines = run.outputs["commands"]
    assert lines["backups db"] == "ssh deploy@203.0.113.50 'python3 /srv/shop/.dropship/backup.py list /srv/shop shop db'"
    assert lines["last backup db"] == "ssh deploy@203.0.113.50 'journalctl --unit dropship-backup-shop-db.service --lines 20 --no-pager'"
    assert lines["restore db"] == "ssh deploy@203.0.113.50 'python3 /srv/shop/.dropship/backup.py restore /srv/shop shop db latest'"


def test_with_the_host_gone_only_the_timers_step_is_kept_and_its_delete_is_skipped() -> None:
    backups = {
        "backups.databases": '["db"]',
        "backups.bucket": "shop-backups",
        "backups.endpoint": "http://127.0.0.1:9000",
        "backups.accessKeyId": "shop",
    }
    secrets = {**LOCAL_SECRETS, "backups.secretAccessKey": f"{CANARY}-s3"}
    normal = run_program("local", local_config(**backups), secrets)
    assert normal.named("backups-timers").retain_on_delete is False
    gone = run_program("local", local_config(**backups, **{"existingHost.gone": "true"}), secrets)
    names = {r.name for r in gone.resources}
    assert "backups-timers" in names
    assert not names & {"backups-script", "backups-env"}
    timers = gone.named("backups-timers")
    assert (timers.retain_on_delete, timers.ignore_changes) == (True, ["*"])
    assert timers.inputs["delete"] == normal.named("backups-timers").inputs["delete"]


def test_the_failure_and_heartbeat_urls_reach_the_backup_service_in_its_600_file_only() -> None:
    config = {
        **stack_config("production"),
        "dropship:backups.databases": '["db"]',
        "dropship:backups.failureUrl": "https://hc-ping.example.net/abc/fail",
        "dropship:backups.heartbeatUrl": "https://hc-ping.example.net/abc",
    }
    run = run_program("production", config, STAGING_SECRETS)
    content = run.named("backups-env").inputs["stdin"]
    assert "DROPSHIP_BACKUP_FAILURE_URL='https://hc-ping.example.net/abc/fail'\n" in content
    assert "DROPSHIP_BACKUP_HEARTBEAT_URL='https://hc-ping.example.net/abc'\n" in content
    assert "hc-ping" not in run.named("backups-timers").inputs["create"] + run.named("backups-timers").inputs["stdin"]
