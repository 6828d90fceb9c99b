from django.db import migrations

FORBID = """
CREATE OR REPLACE FUNCTION pier_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'portal_auditevent is append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER portal_auditevent_append_only
    BEFORE UPDATE OR DELETE ON portal_auditevent
    FOR EACH ROW EXECUTE FUNCTION pier_audit_append_only();
"""

ALLOW = """
DROP TRIGGER IF EXISTS portal_auditevent_append_only ON portal_auditevent;
DROP FUNCTION IF EXISTS pier_audit_append_only();
"""


class Migration(migrations.Migration):
    """The audit trail is append-only in the database too, not only in the ORM."""

    dependencies = [("portal", "0001_initial")]
    operations = [migrations.RunSQL(FORBID, ALLOW)]
