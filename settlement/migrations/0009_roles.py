"""The operations roles (groups) and their permissions; see ops.roles."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def install(apps, schema_editor):
    from ops.roles import roles_install

    # permissions are normally created after all migrations ran: create them now
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    roles_install(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


class Migration(migrations.Migration):
    dependencies = [
        ("settlement", "0008_alter_reviewcase_options_and_more"),
        ("netting", "0005_alter_nettedinstruction_options"),
        ("reconciliation", "0005_alter_break_options"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("authtoken", "0004_alter_tokenproxy_options"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
