"""Allocation rule configuration, written by finance through the API: create, update and delete a rule
and its targets. A changed rule applies to the next allocation run; committed runs keep their rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction

from chargeback.errors import RuleConfigurationError
from chargeback.models import AllocationRule, AllocationTarget

ZERO = Decimal(0)


_RULE_FIELDS = {
    "name", "description", "rule_type", "enabled", "priority", "scope_team", "source", "source_team",
    "match_resource_type", "match_provider", "match_service_name", "match_tag_key", "match_tag_value",
    "valid_from", "valid_to",
}


def _rule_save(rule: AllocationRule, changes: Mapping[str, object], targets: list[Mapping[str, object]] | None) -> AllocationRule:
    unknown = set(changes) - _RULE_FIELDS
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "Unknown allocation rule field."})
    for name, value in changes.items():
        setattr(rule, name, value)
    try:
        rule.full_clean()
    except ValidationError as exc:
        # Each field was read by the caller's form or serializer: what is left is how the fields go
        # together (a by_team rule without a source team, a tag value without its key…).
        field, messages = next(iter(exc.message_dict.items()))
        param = None if field == "__all__" else field
        text = " ".join(messages)
        raise RuleConfigurationError(f"{param}: {text}" if param else text, param=param) from None
    with transaction.atomic():
        rule.save()
        if targets is not None:
            if rule.rule_type == AllocationRule.RuleType.FIXED_SPLIT and targets:
                total = sum((Decimal(t.get("percentage") or 0) for t in targets), ZERO)
                if total != 100:
                    raise RuleConfigurationError(f"targets: The percentages of a fixed split sum to {total}, not 100.",
                                                 param="targets")
            AllocationTarget.objects.filter(rule=rule).delete()
            seen = set()
            for i, target in enumerate(targets):
                key = (target["team"].pk, getattr(target.get("user"), "pk", None))
                if key in seen:
                    raise RuleConfigurationError(f"targets[{i}]: The same team (and user) is listed twice.",
                                                 param=f"targets[{i}]")
                seen.add(key)
                AllocationTarget.objects.create(
                    rule=rule, team=target["team"], user=target.get("user"), percentage=target.get("percentage")
                )
    return rule


def allocation_rule_create(*, created_by=None, targets: list[Mapping[str, object]] | None = None,
                           **fields: object) -> AllocationRule:
    """Create an allocation rule and its targets (``[{"team", "user", "percentage"}]``).

    Validates the rule as ``AllocationRule.clean`` does, and a fixed split's percentages sum to
    exactly 100. Raises ``chargeback.errors.RuleConfigurationError`` (422) naming the field, and
    ``django.core.exceptions.ValidationError`` for a field no rule has.
    """
    return _rule_save(AllocationRule(created_by=created_by), fields, targets or [])


def allocation_rule_update(*, rule: AllocationRule, targets: list[Mapping[str, object]] | None = None,
                           **changes: object) -> AllocationRule:
    """Change a rule's fields; ``targets`` given replaces its targets. Errors as :func:`allocation_rule_create`.

    Committed runs keep their rows: a changed rule applies to the next allocation run only.
    """
    return _rule_save(rule, changes, targets)


def allocation_rule_delete(*, rule: AllocationRule) -> None:
    """Delete a rule no allocation run or invoice line refers to.

    Raises ``django.db.models.ProtectedError`` when runs used it (disable it instead).
    """
    with transaction.atomic():
        rule.delete()
