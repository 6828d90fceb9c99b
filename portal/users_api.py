"""Staff API for people: /api/v1/admin/users[/<username>] (groups, active)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from portal import services
from portal.api import IsStaff, StrictSerializer

User = get_user_model()


class UserSerializer(serializers.ModelSerializer):
    # Django's usernames take Unicode letters; the model validator's pattern, read by an ASCII
    # regex engine (JSON Schema), would say otherwise.
    username = serializers.CharField(read_only=True)
    groups = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["username", "email", "first_name", "last_name", "is_active", "is_staff", "last_login", "groups"]

    def get_groups(self, user) -> list[str]:
        try:
            return user.profile.groups
        except User.profile.RelatedObjectDoesNotExist:
            return []


class UserUpdateSerializer(StrictSerializer):
    groups = serializers.ListField(child=serializers.CharField(max_length=255, trim_whitespace=False), required=False)
    is_active = serializers.BooleanField(required=False)


class UserCreateSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    groups = serializers.ListField(child=serializers.CharField(max_length=255, trim_whitespace=False), required=False,
                                   help_text="As the identity provider names them; what project sharing uses.")
    password = serializers.CharField(max_length=128, required=False, write_only=True, trim_whitespace=False,
                                     help_text="Optional: without one, the account signs in through SSO only.")
    is_staff = serializers.BooleanField(required=False, default=False)


class UserListView(generics.ListAPIView):
    """Staff list people and give someone an account (until SSO creates accounts at first sign-in)."""

    audit_actions = {"POST": "user.create"}

    permission_classes = [IsStaff]
    serializer_class = UserSerializer
    queryset = User.objects.select_related("profile").order_by("username")
    filterset_fields = ["is_active", "is_staff"]

    @extend_schema(request=UserCreateSerializer, responses={201: UserSerializer})
    def post(self, request):
        data = UserCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_create(acting_user=request.user, **data.validated_data)
        return Response(UserSerializer(User.objects.select_related("profile").get(pk=user.pk)).data, status=201,
                        headers={"Location": f"/api/v1/admin/users/{user.get_username()}"})


class UserDetailView(APIView):
    audit_actions = {"PATCH": "user.set_groups"}

    permission_classes = [IsStaff]

    @extend_schema(responses=UserSerializer)
    def get(self, request, username):
        return Response(UserSerializer(get_object_or_404(User.objects.select_related("profile"), username=username)).data)

    @extend_schema(request=UserUpdateSerializer, responses=UserSerializer)
    def patch(self, request, username):
        user = get_object_or_404(User, username=username)
        data = UserUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if "groups" in data.validated_data:
            services.user_set_groups(user=user, groups=data.validated_data["groups"], acting_user=request.user)
        if "is_active" in data.validated_data and data.validated_data["is_active"] != user.is_active:
            services.user_set_active(user=user, active=data.validated_data["is_active"], acting_user=request.user)
        return Response(UserSerializer(User.objects.select_related("profile").get(pk=user.pk)).data)
