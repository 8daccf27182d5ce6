"""The balanced-journal guard checks each INSERT into postings once, over the rows it inserted.

Settlement migration 0002 installed a deferred constraint trigger FOR EACH ROW: at commit, one
query per posting summing its journal's postings (55 µs a row measured, and a sequential scan per
posting on a table never analysed). This replaces it by an AFTER INSERT trigger FOR EACH STATEMENT
over the statement's transition table: the rows one INSERT adds must sum to zero per (journal,
asset). Postings are append-only (UPDATE and DELETE raise, TRUNCATE too), so if every journal
balances before an INSERT and the INSERT's own rows balance per journal, every journal balances
after it: the database still refuses any unbalanced journal, whatever path inserts postings; it
now refuses it at the INSERT instead of at commit, so a journal's postings go in one statement (as
``_journal_write`` and the batch services write them). The forward step first checks that every
journal balances already (the induction's start).
"""

from django.db import migrations

STATEMENT_FN = """
CREATE OR REPLACE FUNCTION clearhouse_postings_balanced() RETURNS trigger AS $$
DECLARE
    bad RECORD;
BEGIN
    SELECT journal_id, asset_id, SUM(amount) AS total INTO bad
      FROM inserted GROUP BY journal_id, asset_id HAVING SUM(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal % does not balance: asset % sums to %', bad.journal_id, bad.asset_id, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""

UNBALANCED = """
SELECT journal_id, asset_id, SUM(amount) FROM settlement_posting
 GROUP BY journal_id, asset_id HAVING SUM(amount) <> 0 LIMIT 1
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(UNBALANCED)
        bad = cursor.fetchone()
    if bad is not None:
        raise RuntimeError(f"journal {bad[0]} does not balance (asset {bad[1]} sums to {bad[2]}): fix it first")
    schema_editor.execute(STATEMENT_FN, params=None)
    schema_editor.execute("DROP TRIGGER IF EXISTS settlement_posting_balanced ON settlement_posting")
    schema_editor.execute(
        "CREATE TRIGGER settlement_posting_balanced AFTER INSERT ON settlement_posting "
        "REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION clearhouse_postings_balanced()"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP TRIGGER IF EXISTS settlement_posting_balanced ON settlement_posting")
    schema_editor.execute(
        "CREATE CONSTRAINT TRIGGER settlement_posting_balanced AFTER INSERT ON settlement_posting "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION clearhouse_journal_balanced()"
    )
    schema_editor.execute("DROP FUNCTION IF EXISTS clearhouse_postings_balanced()")


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_audit_batches")]
    operations = [migrations.RunPython(forwards, backwards)]
