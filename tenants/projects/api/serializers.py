from rest_framework import serializers

from portal.api import ConditionSerializer, StrictSerializer
from tenants.projects.models import AccessKey, Project, ProjectEvent, ProjectGrant, ProjectRole


class ProjectEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProjectEvent
        fields = ["at", "status", "message"]


class ProjectSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username")
    conditions = ConditionSerializer(many=True, read_only=True,
                                     help_text="What the controller saw; `status` is derived from them.")
    config = serializers.SerializerMethodField(help_text="Every effective setting with its value and source.")

    class Meta:
        model = Project
        fields = [
            "slug", "display_name", "description", "namespace", "status", "status_message", "generation",
            "observed_generation", "conditions", "created_by", "created_at", "updated_at", "config_overrides", "config",
        ]

    def get_config(self, project) -> dict:
        from tenants.projects.selectors import effective_config, policy_for

        policy = self.context.get("policy")
        if policy is None:
            policy = self.context["policy"] = policy_for(self.context["tenant"])
        return effective_config(project, policy=policy)


class ProjectDetailSerializer(ProjectSerializer):
    events = serializers.SerializerMethodField()

    class Meta(ProjectSerializer.Meta):
        fields = [*ProjectSerializer.Meta.fields, "events"]

    def get_events(self, project) -> list:
        return ProjectEventSerializer(project.events.all()[:20], many=True).data


class ProjectCreateSerializer(StrictSerializer):
    slug = serializers.CharField(max_length=62)
    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    config_overrides = serializers.DictField(required=False, help_text="Settings keyed like the `config` keys.")


class ProjectUpdateSerializer(StrictSerializer):
    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    config_overrides = serializers.DictField(
        required=False, help_text="A JSON merge patch of the overrides: a key with null is removed (the project "
                                  "inherits it again), a key left out stays as it is.")


class ProjectDefaultsUpdateSerializer(StrictSerializer):
    project_defaults = serializers.DictField(
        required=False, help_text="A JSON merge patch of the organization's defaults (null removes a key).")
    locked_keys = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=20,
                                        help_text="The whole list of settings projects may not override.")


class CeilingSerializer(serializers.Serializer):
    value = serializers.CharField()
    level = serializers.CharField(help_text="Who set it: platform.")
    scope = serializers.CharField(help_text="platform (every organization) or organization (this one).")


class BudgetEntrySerializer(serializers.Serializer):
    budget = serializers.CharField()
    used = serializers.CharField(help_text="The sum over the organization's projects now.")


class ProjectDefaultsSerializer(serializers.Serializer):
    project_defaults = serializers.DictField()
    locked_keys = serializers.ListField(child=serializers.CharField())
    platform_locks = serializers.ListField(child=serializers.CharField(), help_text="Set by platform staff.")
    ceilings = serializers.DictField(child=CeilingSerializer())
    budget = serializers.DictField(child=BudgetEntrySerializer())


class TenantPolicyUpdateSerializer(StrictSerializer):
    ceilings = serializers.DictField(required=False, help_text="A JSON merge patch: {setting: quantity or null}.")
    budget = serializers.DictField(required=False, help_text="A JSON merge patch: {quota setting: quantity or null}.")
    locks = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=20,
                                  help_text="The whole list of settings nobody in the organization may change.")


class ClampedProjectSerializer(serializers.Serializer):
    project = serializers.CharField()
    keys = serializers.DictField(help_text="{setting: {asked, applied}}")


class TenantPolicySerializer(serializers.Serializer):
    ceilings = serializers.DictField()
    budget = serializers.DictField()
    locks = serializers.ListField(child=serializers.CharField())
    clamped_projects = serializers.ListField(child=ClampedProjectSerializer(),
                                             help_text="Projects whose values the ceilings now bring down.")


class ProjectGrantSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="subject", help_text="The username, or the group as the identity provider names it.")
    created_by = serializers.CharField(source="created_by.username", help_text="Who granted it.")
    updated_by = serializers.CharField(source="updated_by.username", allow_null=True, default=None,
                                       help_text="Who last changed its role.")

    class Meta:
        model = ProjectGrant
        fields = ["id", "kind", "name", "role", "created_by", "created_at", "updated_by", "updated_at"]


class ProjectGrantCreateSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=ProjectGrant.Kind.choices)
    name = serializers.CharField(max_length=255, trim_whitespace=False,
                                 help_text="A member's username, or a group as the identity provider names it "
                                           "(e.g. system:authenticated or /org/team).")
    role = serializers.ChoiceField(choices=ProjectRole.choices)


class ProjectGrantUpdateSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=ProjectRole.choices)


class AccessSerializer(serializers.Serializer):
    role = serializers.CharField(allow_null=True)
    source = serializers.CharField()
    actions = serializers.ListField(child=serializers.CharField())


class AccessKeySerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username")
    token_hint = serializers.SerializerMethodField(help_text="The token's last four characters.")
    legacy = serializers.BooleanField(
        source="is_legacy", read_only=True,
        help_text="Issued in the project's namespace, where anyone who may run pods there can act as it: re-issue it.")
    state = serializers.CharField(read_only=True, help_text="active, expired, revoked, or \"revoked, not yet "
                                                            "removed\" while removing its cluster objects fails.")
    conditions = ConditionSerializer(many=True, read_only=True,
                                     help_text="`Removed` once its revocation reached the cluster.")

    class Meta:
        model = AccessKey
        fields = ["id", "name", "role", "state", "token_hint", "service_account", "service_account_namespace", "legacy",
                  "expires_at", "created_by", "created_at", "last_used_at", "revoked_at", "conditions"]

    def get_token_hint(self, key) -> str:
        return f"…{key.token_last4}"


class AccessKeyCreatedSerializer(AccessKeySerializer):
    token = serializers.SerializerMethodField(help_text="Shown in this response only.")

    class Meta(AccessKeySerializer.Meta):
        fields = [*AccessKeySerializer.Meta.fields, "token"]

    def get_token(self, key) -> str:
        return self.context["token"]


class AccessKeyCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    role = serializers.ChoiceField(choices=ProjectRole.choices)
    expires_in = serializers.IntegerField(required=False, allow_null=True,
                                          help_text="Seconds; default 90 days, at most the organization's maximum.")
