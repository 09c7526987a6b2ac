"""dropship's policy pack: `pulumi preview --policy-pack policy` (rules in dropship_rules.py)."""

import sys
from pathlib import Path

# The rules share dropship's own guardrails: the project's package, beside this directory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dropship_rules import policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name="dropship",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=policies(Path(__file__).resolve().parent.parent),
)
