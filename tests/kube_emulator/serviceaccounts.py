"""ServiceAccounts in pods and Secrets: the ServiceAccount admission plugin and the token controller.

What a client observes follows the real cluster (`plugin/pkg/admission/serviceaccount`,
`pkg/controller/serviceaccount/tokens_controller.go`, `pkg/apis/core/validation` ValidateSecret):

- A pod created without `spec.serviceAccountName` runs as `default`; `spec.serviceAccount` (the
  deprecated alias) is read when the name is empty, and answered equal to it. The ServiceAccount
  must exist in the pod's own namespace, else 403: `pods "x" is forbidden: error looking up
  service account <ns>/<name>: serviceaccount "<name>" not found` (so a pod can never run as a
  ServiceAccount of another namespace). Mirror pods may not name one. Only at create (the field
  is immutable). The emulator mounts no token volume into pods (its kubelet runs no processes).
- A Secret of type `kubernetes.io/service-account-token` needs the annotation
  `kubernetes.io/service-account.name` (422 otherwise). The token controller then, for a
  ServiceAccount of that name in the Secret's own namespace (and of the uid in
  `kubernetes.io/service-account.uid`, if given), fills `data.token` (a legacy token, see
  tokens.py) and `data.namespace`, and sets both annotations; `data.ca.crt` is not written (the
  emulator serves plain HTTP: a controller-manager without `--root-ca-file`). A Secret whose
  ServiceAccount does not exist there gets no token: the controller deletes it, as it deletes an
  account's token Secrets once the account is gone.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from . import errors
from .registry import ResourceType
from .store import Txn
from .tokens import TokenAuthority

Obj = dict[str, Any]

TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"
NAME_ANNOTATION = "kubernetes.io/service-account.name"
UID_ANNOTATION = "kubernetes.io/service-account.uid"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
DEFAULT_SERVICE_ACCOUNT = "default"


class ServiceAccountController:
    """The admission plugin (`admit_create`) and the token controller (`reconcile`)."""

    def __init__(self, authority: TokenAuthority):
        self._authority = authority

    def reset(self, txn: Txn) -> None:
        pass

    def admit_create(self, txn: Txn, resource: ResourceType, obj: Obj) -> None:
        if resource.group != "" or resource.plural != "pods":
            return
        metadata = obj["metadata"]
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return  # validation answers
        name = metadata.get("name") or ""
        if MIRROR_ANNOTATION in (metadata.get("annotations") or {}):
            if spec.get("serviceAccountName"):
                raise errors.forbidden("", "pods", name, "a mirror pod may not reference service accounts")
            return
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
        spec["serviceAccountName"] = spec["serviceAccount"] = account
        namespace = metadata["namespace"]
        if txn.get(txn.resource("", "v1", "serviceaccounts"), namespace, account) is None:
            raise errors.forbidden(
                "", "pods", name,
                f'error looking up service account {namespace}/{account}: serviceaccount "{account}" not found',
            )

    def reconcile(self, txn: Txn) -> None:
        secrets = txn.resource("", "v1", "secrets")
        accounts = txn.resource("", "v1", "serviceaccounts")
        for secret in txn.items(secrets):
            metadata = secret["metadata"]
            if secret.get("type") != TOKEN_SECRET_TYPE or metadata.get("deletionTimestamp"):
                continue
            annotations = metadata.get("annotations") or {}
            account = txn.get(accounts, metadata["namespace"], annotations.get(NAME_ANNOTATION, ""))
            if account is None or annotations.get(UID_ANNOTATION, account["metadata"]["uid"]) != account["metadata"]["uid"]:
                txn.delete(secrets, secret)
                continue
            data = secret.get("data") or {}
            if data.get("token") and data.get("namespace"):
                continue
            updated = copy.deepcopy(secret)
            data = updated.setdefault("data", {})
            data.setdefault("namespace", _b64(metadata["namespace"]))
            if not data.get("token"):
                data["token"] = _b64(self._authority.issue_legacy(account, metadata["name"]))
            updated["metadata"].setdefault("annotations", {}).update(
                {NAME_ANNOTATION: account["metadata"]["name"], UID_ANNOTATION: account["metadata"]["uid"]})
            txn.put(secrets, updated)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
