"""The worker side of invitations: mailing one (tenants.tasks.send_invitation calls this; the
services that invite or resend enqueue that task after their commit)."""

from __future__ import annotations

from django.conf import settings
from django.core import mail
from django.db import models
from django.template.loader import render_to_string
from django.utils import timezone

from tenants.models import PendingMembership


def invitation_send(pending_id: int) -> bool:
    """The worker's part: mail the invitation and note when (or why not). False when there is
    nothing to send: the invitation was withdrawn or claimed meanwhile. Raises on a mail error
    after noting it, so the task retries."""
    pending = PendingMembership.objects.select_related("tenant", "invited_by").filter(pk=pending_id).first()
    if pending is None or not pending.email:
        return False
    context = {"pending": pending, "tenant": pending.tenant, "sign_in_url": f"{settings.PIER_BASE_URL}/login"
               if settings.PIER_BASE_URL else "", "inviter": pending.invited_by}
    try:
        mail.send_mail(  # looked up at each call: tests replace django.core.mail.send_mail
            subject=f"You are invited to {pending.tenant.name or pending.tenant.slug} on Pier",
            message=render_to_string("tenants/invitation_email.txt", context),
            from_email=None, recipient_list=[pending.email],
        )
    except Exception as exc:
        PendingMembership.objects.filter(pk=pending_id).update(send_error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    PendingMembership.objects.filter(pk=pending_id).update(sent_at=timezone.now(), send_count=models.F("send_count") + 1,
                                                           send_error="")
    return True
