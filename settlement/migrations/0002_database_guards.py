"""PostgreSQL guards that do not depend on the Python code behaving.

* Journals, postings and the transition log are append-only: UPDATE and DELETE raise.
* A journal's postings must sum to zero per asset when the transaction commits (a deferred
  constraint trigger, so the postings of one journal may be inserted one by one).
* The transition-log chain head row exists.
"""

from django.db import migrations

APPEND_ONLY_FN = """
CREATE OR REPLACE FUNCTION clearhouse_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""

BALANCED_FN = """
CREATE OR REPLACE FUNCTION clearhouse_journal_balanced() RETURNS trigger AS $$
DECLARE
    bad RECORD;
BEGIN
    SELECT asset_id, SUM(amount) AS total INTO bad
      FROM settlement_posting WHERE journal_id = NEW.journal_id
     GROUP BY asset_id HAVING SUM(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal % does not balance: asset % sums to %', NEW.journal_id, bad.asset_id, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""

TABLES = ["settlement_journal", "settlement_posting", "settlement_transitionlog"]


def forwards(apps, schema_editor):
    TransitionLogHead = apps.get_model("settlement", "TransitionLogHead")
    TransitionLogHead.objects.get_or_create(pk=1)
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(APPEND_ONLY_FN, params=None)
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION clearhouse_append_only()"
        )
    schema_editor.execute(BALANCED_FN, params=None)
    schema_editor.execute(
        "CREATE CONSTRAINT TRIGGER settlement_posting_balanced AFTER INSERT ON settlement_posting "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION clearhouse_journal_balanced()"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP TRIGGER IF EXISTS settlement_posting_balanced ON settlement_posting")
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS clearhouse_journal_balanced()")
    schema_editor.execute("DROP FUNCTION IF EXISTS clearhouse_append_only()")


class Migration(migrations.Migration):
    dependencies = [("settlement", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
