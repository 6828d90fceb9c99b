"""Sign-ins and sign-outs are audited like any other change of state."""

from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from portal import audit
from portal.models import AuditEvent


@receiver(user_logged_in, dispatch_uid="pier_audit_login")
def _logged_in(sender, request, user, **kwargs):
    audit.record(action="auth.login", actor=user, target_type="user", target=user.get_username())


@receiver(user_logged_out, dispatch_uid="pier_audit_logout")
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        audit.record(action="auth.logout", actor=user, target_type="user", target=user.get_username())


@receiver(user_login_failed, dispatch_uid="pier_audit_login_failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    username = str(credentials.get("username", ""))[:150]
    # django-axes marks a sign-in it refused because of earlier failures (portal/throttling.py).
    throttled = bool(getattr(request, "axes_locked_out", False))
    audit.record(action="auth.login", actor=AnonymousUser(), target_type="user", target=username,
                 outcome=AuditEvent.Outcome.DENIED,
                 details={"reason": "too many attempts" if throttled else "bad credentials",
                          "address": getattr(request, "axes_ip_address", None)})
