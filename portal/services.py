"""Writes to people: their groups and whether they may sign in. Users are deactivated, never
deleted (tenant tables reference them across schemas)."""

from __future__ import annotations

from django.db import transaction

from portal import audit, signals
from portal.errors import InvalidInput
from portal.models import UserProfile

MAX_GROUPS = 500


def clean_groups(groups, *, field: str = "groups") -> list[str]:
    """Group names as OIDC and OpenShift allow them: any printable text up to 255 characters
    (`system:authenticated`, `/org/team`, `Team A`), no control characters."""
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        raise InvalidInput(f"{field}: give a list of at most {MAX_GROUPS} group names.",
                           details={field: ["A list of group names."]})
    cleaned = []
    for name in groups:
        if not isinstance(name, str) or not name.strip() or len(name) > 255 or not name.isprintable():
            raise InvalidInput(f"{field}: {name!r} is not a group name (1–255 printable characters).",
                               details={field: ["Not a group name."]})
        cleaned.append(name.strip())
    return sorted(set(cleaned))


def groups_of(user) -> list[str]:
    profile = UserProfile.objects.filter(user_id=user.pk).first()
    return profile.groups if profile else []


def user_set_groups(*, user, groups, acting_user) -> UserProfile:
    cleaned = clean_groups(groups)
    with transaction.atomic():
        profile, _ = UserProfile.objects.select_for_update().get_or_create(user=user)
        before = profile.groups
        profile.groups = cleaned
        profile.save(update_fields=["groups", "updated_at"])
        signals.user_groups_changed.send(sender=UserProfile, user=user)
        audit.record(action="user.set_groups", actor=acting_user, target_type="user", target=user.get_username(),
                     details={"before": before, "after": cleaned})
    return profile


def user_set_active(*, user, active: bool, acting_user) -> None:
    with transaction.atomic():
        user.is_active = active
        user.save(update_fields=["is_active"])
        audit.record(action="user.activate" if active else "user.deactivate", actor=acting_user,
                     target_type="user", target=user.get_username())
