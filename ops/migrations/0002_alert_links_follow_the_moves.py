"""Alerts raised before the move link to the admin pages of the models' old app (settlement); point
them at the new ones (reference, ledger, ops) so the links keep opening the record."""

from django.db import migrations

MOVED = {
    "reference": ("participant", "asset", "instrument", "participantuser", "walletaddress", "bankaccount", "custodyaccount"),
    "ledger": ("ledgeraccount", "journal", "posting", "ledgerlock", "transitionlog", "transitionloghead"),
    "ops": ("reviewcase", "notification", "opsalert", "approvalrequest", "dailyreport"),
}


def _relink(apps, *, forward: bool) -> None:
    OpsAlert = apps.get_model("ops", "OpsAlert")
    for app, models in MOVED.items():
        for model in models:
            old, new = f"/admin/settlement/{model}/", f"/admin/{app}/{model}/"
            if not forward:
                old, new = new, old
            for alert in OpsAlert.objects.filter(link__startswith=old).only("pk", "link"):
                OpsAlert.objects.filter(pk=alert.pk).update(link=new + alert.link[len(old) :])


def links_forward(apps, schema_editor):
    _relink(apps, forward=True)


def links_back(apps, schema_editor):
    _relink(apps, forward=False)


class Migration(migrations.Migration):
    dependencies = [("ops", "0001_initial")]

    operations = [migrations.RunPython(links_forward, links_back)]
