"""Access keys record where their ServiceAccount is: keys issued from now on are in Pier's keys
namespace; every key issued before is in its project's namespace (legacy: it keeps working until
it is revoked, re-issued or expires)."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def legacy_keys_are_in_their_project(apps, schema_editor):
    AccessKey = apps.get_model("projects", "AccessKey")
    Project = apps.get_model("projects", "Project")
    AccessKey.objects.update(service_account_namespace=Subquery(
        Project.objects.filter(pk=OuterRef("project_id")).values("namespace")[:1]))


class Migration(migrations.Migration):
    dependencies = [("projects", "0007_project_grants")]

    operations = [
        migrations.AddField(
            model_name="accesskey", name="service_account_namespace",
            field=models.CharField(default="", max_length=63, help_text=(
                "Where the ServiceAccount is: the keys namespace, or (legacy) the project's.")),
            preserve_default=False,
        ),
        migrations.RunPython(legacy_keys_are_in_their_project, migrations.RunPython.noop),
    ]
