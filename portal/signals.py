"""Signals of the kernel, so that portal/ never imports the apps that react to them."""

from django.dispatch import Signal

# Sent inside the transaction that changed a person's groups. Argument: user.
user_groups_changed = Signal()
# Sent inside the transaction that deactivated or reactivated a person. Arguments: user, active.
user_active_changed = Signal()
# Sent by `manage.py install_cluster_objects` (deploy time, and the local run's start): a receiver
# returns the cluster-scoped objects its app needs (e.g. a CustomResourceDefinition), which are
# applied before Pier's ClusterRoles.
cluster_objects = Signal()
