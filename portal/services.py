"""Writes to people: their groups and whether they may sign in. Users are deactivated, never
deleted (tenant tables reference them across schemas)."""

from __future__ import annotations

from django.db import transaction

from portal import audit, signals
from portal.errors import Conflict, InvalidInput
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
        signals.user_active_changed.send(sender=type(user), user=user, active=active)
        audit.record(action="user.activate" if active else "user.deactivate", actor=acting_user,
                     target_type="user", target=user.get_username())


def user_create(*, username: str, acting_user, email: str = "", groups=None, password: str | None = None,
                is_staff: bool = False, first_name: str = "", last_name: str = ""):
    """Give someone an account (until SSO creates them at their first sign-in). Without a
    password the account can only sign in through SSO; invitations by username or email are
    claimed at the first sign-in."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.password_validation import validate_password
    from django.contrib.auth.validators import UnicodeUsernameValidator
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    User = get_user_model()
    errors: dict[str, list[str]] = {}
    username = (username or "").strip()
    try:
        if not 1 <= len(username) <= 150:
            raise ValidationError("Give 1 to 150 characters.")
        UnicodeUsernameValidator()(username)
    except ValidationError as exc:
        errors["username"] = exc.messages
    email = (email or "").strip().lower()
    if email:
        try:
            validate_email(email)
        except ValidationError:
            errors["email"] = ["Not a valid email address."]
    cleaned_groups = []
    try:
        cleaned_groups = clean_groups(groups if groups is not None else [])
    except InvalidInput as exc:
        errors.update(exc.details)
    candidate = User(username=username, email=email, first_name=first_name or "", last_name=last_name or "")
    if password:
        try:
            validate_password(password, user=candidate)
        except ValidationError as exc:
            errors["password"] = exc.messages
    if errors:
        raise InvalidInput("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()), details=errors)
    with transaction.atomic():
        if User.objects.filter(username=username).exists():
            raise Conflict(f"username: '{username}' already has an account.", code="username_taken",
                           details={"username": ["Already taken."]})
        candidate.is_staff = bool(is_staff)
        if password:
            candidate.set_password(password)
        else:
            candidate.set_unusable_password()
        candidate.save()
        UserProfile.objects.create(user=candidate, groups=cleaned_groups)
        audit.record(action="user.create", actor=acting_user, target_type="user", target=username,
                     details={"email": email, "groups": cleaned_groups, "is_staff": candidate.is_staff,
                              "password": "set" if password else "none (SSO only)"})
    return candidate
