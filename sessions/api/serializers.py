from rest_framework import serializers

from portal.api import ConditionSerializer, StrictSerializer
from sessions.models import AgenticSession, RunnerSecret
from sessions.services import api_llm


class LlmSerializer(StrictSerializer):
    model = serializers.CharField(required=False, allow_blank=True, max_length=200)
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2)
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)


class RepoSerializer(StrictSerializer):
    url = serializers.CharField(help_text="https://, ssh://, git:// or user@host:path")
    branch = serializers.CharField(required=False, allow_blank=True)


class EnvSerializer(StrictSerializer):
    name = serializers.CharField(help_text="Not secret (the project's runner secret is for secrets); not PIER_*.")
    value = serializers.CharField(required=False, allow_blank=True)


class SessionCreateSerializer(StrictSerializer):
    """Validated by the service (sessions/services.py), which names the field of any error; these
    declarations are for the API's schema."""

    prompt = serializers.CharField(trim_whitespace=False)
    display_name = serializers.CharField(required=False, allow_blank=True)
    llm = LlmSerializer(required=False)
    timeout_seconds = serializers.IntegerField(
        required=False, help_text="Seconds the cluster lets the runner run (activeDeadlineSeconds); the default "
                                  "PIER_SESSION_DEFAULT_TIMEOUT, at most PIER_SESSION_MAX_TIMEOUT.")
    repos = RepoSerializer(many=True, required=False)
    env = EnvSerializer(many=True, required=False)


class CloneSerializer(StrictSerializer):
    project = serializers.CharField(required=False, help_text="The project to clone into (default: this one).")


class CreatorSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="user or key")
    name = serializers.CharField(help_text="The person's username, or the key's name.")


class SessionSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="project.slug")
    llm = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()
    conditions = ConditionSerializer(many=True, read_only=True)
    finished = serializers.BooleanField(source="is_finished", read_only=True)

    class Meta:
        model = AgenticSession
        fields = ["name", "project", "display_name", "prompt", "llm", "timeout_seconds", "repos", "env", "phase",
                  "reason", "message", "finished", "start_time", "completion_time", "result", "exit_code",
                  "runtime_mode", "runner_image", "runner_resources", "created_by", "created_at", "cloned_from", "stop_requested_at", "generation",
                  "observed_generation", "conditions"]

    def get_llm(self, s) -> dict:
        return api_llm(s.llm)

    def get_created_by(self, s) -> dict:
        return {"kind": s.created_by_kind, "name": s.created_by_name}


class SessionLogSerializer(serializers.Serializer):
    source = serializers.CharField(help_text="live (read from the running pod) or captured (Pier's copy).")
    text = serializers.CharField()
    truncated = serializers.BooleanField(help_text="Only the end is kept (PIER_SESSION_LOG_BYTES).")


class RunnerSecretWriteSerializer(StrictSerializer):
    data = serializers.DictField(child=serializers.CharField(trim_whitespace=False),
                                 help_text="{NAME: value}: replaces the whole secret (e.g. OPENAI_BASE_URL, OPENAI_API_KEY).")


class RunnerSecretStateSerializer(serializers.Serializer):
    keys = serializers.ListField(child=serializers.CharField(), help_text="The names set (never the values).")
    updated_at = serializers.DateTimeField(allow_null=True, help_text="When it was last written (null: never).")
    updated_by = serializers.CharField(allow_blank=True)
