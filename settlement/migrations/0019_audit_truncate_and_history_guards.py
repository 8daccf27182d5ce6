"""TRUNCATE guards on the ledger and audit tables and the chain head; every simple-history table
append-only (UPDATE, DELETE and TRUNCATE refused). See settlement/dbguards.py."""

from django.db import migrations

from ledger import dbguards


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in dbguards.LEDGER_AUDIT_TABLES:
        dbguards.truncate_guard(schema_editor, table)
    dbguards.head_guard(schema_editor)
    for table in dbguards.history_tables(apps):
        dbguards.append_only_guard(schema_editor, table)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in dbguards.history_tables(apps):
        dbguards.drop_guards(schema_editor, table, row=True)
    dbguards.drop_guards(schema_editor, dbguards.HEAD_TABLE, row=False)
    for table in dbguards.LEDGER_AUDIT_TABLES:
        dbguards.drop_guards(schema_editor, table, row=False)


class Migration(migrations.Migration):
    dependencies = [
        ("settlement", "0018_fee_charge_fsm"),
        # every app's history tables exist at this point
        ("netting", "0005_alter_nettedinstruction_options"),
        ("reconciliation", "0007_charged_bookings_idx"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
