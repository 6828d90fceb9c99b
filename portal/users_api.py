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


class UserListView(generics.ListAPIView):
    permission_classes = [IsStaff]
    serializer_class = UserSerializer
    queryset = User.objects.select_related("profile").order_by("username")
    filterset_fields = ["is_active", "is_staff"]


class UserDetailView(APIView):
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
