"""Group access becomes project grants: people or groups, one grant (one role) per subject."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

RANK = {"view": 1, "edit": 2, "admin": 3}


def keep_the_highest_role(apps, schema_editor):
    """Before this, one group could hold several roles in a project: keep its highest."""
    Grant = apps.get_model("projects", "ProjectGrant")
    best = {}
    for grant in Grant.objects.order_by("pk"):
        key = (grant.project_id, grant.subject)
        if key not in best or RANK[grant.role] > RANK[best[key].role]:
            best[key] = grant
    keep = {g.pk for g in best.values()}
    Grant.objects.exclude(pk__in=keep).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('projects', '0006_project_policy'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(model_name='groupaccess', name='group_access_unique'),
        migrations.RenameModel(old_name='GroupAccess', new_name='ProjectGrant'),
        migrations.RenameField(model_name='projectgrant', old_name='group', new_name='subject'),
        migrations.AddField(
            model_name='projectgrant', name='kind',
            field=models.CharField(choices=[('user', 'user'), ('group', 'group')], default='group', max_length=8),
        ),
        migrations.AddField(
            model_name='projectgrant', name='user',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='projectgrant', name='updated_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(model_name='projectgrant', name='updated_at',
                            field=models.DateTimeField(blank=True, null=True)),
        migrations.AlterField(
            model_name='projectgrant', name='project',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='grants',
                                    to='projects.project'),
        ),
        migrations.AlterModelOptions(name='projectgrant', options={'ordering': ['kind', 'subject']}),
        migrations.RunPython(keep_the_highest_role, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='projectgrant',
            constraint=models.UniqueConstraint(fields=('project', 'kind', 'subject'), name='project_grant_one_per_subject'),
        ),
    ]
