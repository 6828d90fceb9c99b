"""Signals other apps listen to, so that tenants/ never imports them (sessions, projects).

These are the tenant lifecycle hooks: an app that lives inside tenant schemas connects its
receivers in its AppConfig.ready and is told when a tenant is provisioned (tenant_seeding),
suspended, resumed and deleted. tests/test_import_graph.py keeps tenants/ from importing them.
"""

from django.dispatch import Signal

# Sent by the provisioning job's seed_defaults step, inside the job's transaction and in the new
# tenant's schema (new=True: the schema was made in this transaction, nothing is in it yet), so
# that the tenant becomes active with what every app needs; a receiver that raises makes the step
# fail and retry. Sent again by the periodic repair in each active tenant's schema (new=False):
# receivers then recreate only what went missing, write nothing otherwise, and return True when
# they created something. Arguments: tenant, new.
tenant_seeding = Signal()
# Sent after a tenant was suspended (committed). Argument: tenant.
tenant_suspended = Signal()
# Sent after a tenant was resumed (committed). Argument: tenant.
tenant_resumed = Signal()
# Sent inside the transaction that changed a tenant's settings (staff), after the row is saved.
# Arguments: tenant, changed (the field names whose value changed, e.g. ["runtime_mode"]).
tenant_updated = Signal()
# Sent by the deletion task before the schema is dropped; receivers remove what they made
# outside the database (Kubernetes objects) and raise to make the step retry. Argument: tenant.
tenant_deleting = Signal()
# Sent inside the transaction that changed a member's organization role (from none, too: a new
# member) or removed them, so a receiver's writes commit or roll back with it. Arguments: tenant, user.
member_role_changed = Signal()
member_removed = Signal()
# Sent while an organization's home page is drawn, in its schema; a receiver returns a section
# for the page ({"template": name, **context}) or None. Argument: request.
home_sections = Signal()
# Sent while staff look at a tenant in the admin, in its schema (active or suspended tenants only);
# a receiver returns a section ({"title": str, "html": safe HTML}) or None. Argument: tenant.
tenant_admin_sections = Signal()
