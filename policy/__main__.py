"""dropship's policy pack: `pulumi preview --policy-pack policy` (rules in dropship_rules.py)."""

from pathlib import Path

from dropship_rules import policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name="dropship",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=policies(Path(__file__).resolve().parent.parent),
)
