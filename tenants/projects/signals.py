"""Signals of the projects app, for the apps built on projects (sessions), so that projects never
imports them."""

from django.dispatch import Signal

# Sent inside the transaction that revoked access keys, in the tenant's schema. Arguments:
# key_ids (the AccessKey primary keys), reason (a sentence: "revoked by alice").
keys_revoked = Signal()
# Sent by a project's teardown before its namespace is deleted, in the tenant's schema: receivers
# remove what they made in it (and raise to make the teardown retry). Argument: project.
project_deleting = Signal()
