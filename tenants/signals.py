"""Signals other apps listen to, so that tenants/ never imports them (sessions, projects)."""

from django.dispatch import Signal

# Sent after a tenant was suspended (committed). Argument: tenant.
tenant_suspended = Signal()
# Sent after a tenant was resumed (committed). Argument: tenant.
tenant_resumed = Signal()
# Sent by the deletion task before the schema is dropped; receivers remove what they made
# outside the database (Kubernetes objects) and raise to make the step retry. Argument: tenant.
tenant_deleting = Signal()
# Sent inside the transaction that changed a member's organization role (or removed them), so a
# receiver's writes commit or roll back with it. Arguments: tenant, user.
member_role_changed = Signal()
member_removed = Signal()
# Sent while an organization's home page is drawn, in its schema; a receiver returns a section
# for the page ({"template": name, **context}) or None. Argument: request.
home_sections = Signal()
