from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from portal.api import ConditionSerializer, StrictSerializer
from portal.models import AuditEvent
from tenants.models import JobStep, Membership, PendingMembership, ProvisioningJob, Role, Tenant
from tenants.validators import EMAIL_MAX_LENGTH, validate_person_identifier


class PersonField(serializers.CharField):
    """A username (at most 150 characters) or an email address (at most 254)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", EMAIL_MAX_LENGTH)
        kwargs.setdefault("help_text", "A username (at most 150 characters) or an email address.")
        super().__init__(**kwargs)
        self.validators.append(validate_person_identifier)


class JobStepSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobStep
        fields = ["name", "status", "attempts", "error", "started_at", "finished_at"]


class JobSerializer(serializers.ModelSerializer):
    steps = JobStepSerializer(many=True, read_only=True)
    tenant = serializers.CharField(source="tenant_slug")
    url = serializers.SerializerMethodField()

    class Meta:
        model = ProvisioningJob
        fields = [
            "id", "url", "kind", "tenant", "status", "attempts", "error", "requested_by", "request_id",
            "created_at", "started_at", "finished_at", "steps",
        ]

    def get_url(self, job) -> str:
        return reverse("api:job-detail", kwargs={"pk": job.pk})


class TenantSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    effective_max_projects = serializers.IntegerField(read_only=True)
    effective_max_members = serializers.IntegerField(read_only=True)
    effective_max_running_sessions = serializers.IntegerField(read_only=True)
    conditions = ConditionSerializer(many=True, read_only=True,
                                     help_text="Provisioned, and Removed once a deletion is asked for; `status` is "
                                               "derived from them.")

    class Meta:
        model = Tenant
        fields = [
            "slug", "url", "name", "status", "status_message", "max_projects", "effective_max_projects",
            "max_members", "effective_max_members", "runtime_mode", "runner_image", "max_running_sessions",
            "effective_max_running_sessions", "created_at", "updated_at", "suspended_at",
            "deletion_requested_at", "generation", "observed_generation", "conditions",
        ]

    def get_url(self, tenant) -> str:
        return reverse("api:admin-tenant-detail", kwargs={"slug": tenant.slug})


class TenantCreatedSerializer(TenantSerializer):
    """The answer to POST /api/v1/admin/tenants."""

    job = JobSerializer(read_only=True, allow_null=True, help_text="The provisioning job.")
    invited = serializers.BooleanField(
        read_only=True,
        help_text="True when no account matches `owner`: they are invited and become owner at their "
                  "first sign-in (check for a mistyped name); false when an existing account was found.",
    )

    class Meta(TenantSerializer.Meta):
        fields = [*TenantSerializer.Meta.fields, "job", "invited"]


class TenantCreateSerializer(StrictSerializer):
    slug = serializers.CharField(max_length=100, help_text="Lowercase letters, digits, hyphens; 2–41 characters.")
    name = serializers.CharField(max_length=200)
    owner = PersonField()
    max_projects = serializers.IntegerField(min_value=0, max_value=100000, required=False, allow_null=True)
    max_members = serializers.IntegerField(min_value=1, max_value=100000, required=False, allow_null=True)


class TenantUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    max_projects = serializers.IntegerField(min_value=0, max_value=100000, required=False, allow_null=True)
    max_members = serializers.IntegerField(min_value=1, max_value=100000, required=False, allow_null=True)
    runtime_mode = serializers.ChoiceField(
        choices=["shared", "dedicated"], required=False,
        help_text="dedicated: its pods run on nodes labelled and tainted pier.dev/tenant=<slug> (new pods only).")
    runner_image = serializers.CharField(max_length=500, required=False, allow_blank=True,
                                         help_text="The session runner's image for this organization; empty: the platform's.")
    max_running_sessions = serializers.IntegerField(min_value=0, max_value=100000, required=False, allow_null=True)


class MyTenantSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    html_url = serializers.SerializerMethodField()

    class Meta:
        model = Tenant
        fields = ["slug", "name", "status", "role", "html_url"]

    def get_role(self, tenant) -> str:
        # From the selector's annotation (lists) or the access check (one tenant).
        return getattr(tenant, "role", None) or self.context.get("role", "")

    def get_html_url(self, tenant) -> str:
        return reverse("tenants:home", kwargs={"tenant_slug": tenant.slug})


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    email = serializers.EmailField(source="user.email")
    full_name = serializers.CharField(source="user.get_full_name")

    class Meta:
        model = Membership
        fields = ["username", "email", "full_name", "role", "created_at"]


class MemberAddSerializer(StrictSerializer):
    username = PersonField()
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class MemberAddedSerializer(serializers.Serializer):
    """The answer to POST /api/v1/tenants/<slug>/members: a membership, or an invitation."""

    id = serializers.IntegerField(required=False, help_text="The invitation's id (invitations only).")
    username = serializers.CharField()
    email = serializers.CharField()
    full_name = serializers.CharField(required=False, help_text="Members only.")
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField()
    invited = serializers.BooleanField(
        help_text="True when no account matches the username or email given: an invitation, which becomes "
                  "a membership at the person's first sign-in (check for a mistyped name); false when an "
                  "existing account was added."
    )
    pending = serializers.BooleanField(help_text="The same as `invited` (kept for existing clients).")


class MemberUpdateSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, help_text="Who invited them (null once that account is gone).")
    sent_at = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text="When the invitation email last went out (null: not sent, or invited by username: no address).")
    send_count = serializers.IntegerField(read_only=True, help_text="How many invitation emails went out.")
    send_error = serializers.CharField(read_only=True, help_text="Why the last email failed; empty when it did not.")

    class Meta:
        model = PendingMembership
        fields = ["id", "username", "email", "role", "created_at", "invited_by", "sent_at", "send_count", "send_error"]


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id", "at", "actor", "tenant", "action", "target_type", "target", "outcome", "source",
            "request_id", "details",
        ]
