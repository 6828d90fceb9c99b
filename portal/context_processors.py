from django.conf import settings


def pier(request):
    return {
        "pier_tenant": getattr(request, "tenant", None),
        "pier_tenant_role": getattr(request, "tenant_role", None),
        "pier_debug": settings.DEBUG,
    }
