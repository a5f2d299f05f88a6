"""mandate-verify for Python: what a service or an agent in Python needs to work with
Mandate's delegated SVIDs (DESIGN 3.10, docs/DELEGATION.md).

- `Delegation`: the strict decoder of the X.509 extension and the JWT `delegation` claim;
- `TaskStatusWatcher`: the fail-closed view of the agent's closed-task feed;
- `CrlWatcher`: the trust domain's CRLs, verified against the bundle;
- `Verifier.authorize`: the per-request rules with the refusal codes of DELEGATION.md 5;
- `DelegationClient`: opens and closes sub-tasks (DESIGN 3.8);
- `tls`: mTLS server and client contexts from py-spiffe's `X509Source`.
"""

from .authorize import Verifier, check_grant
from .caller import CallerIdentity, DelegationPolicy
from .delegation import DELEGATION_OID, Delegation
from .model import (
    Approval,
    DelegationError,
    Link,
    Principal,
    PrincipalKind,
    TaskInfo,
    ValueLimit,
)
from .refusal import Refusal
from .revocation import CrlWatcher
from .status import DEFAULT_STALENESS, TaskStatusWatcher
from .subtask import DelegationClient, Subtask, SubtaskError

__all__ = [
    "Approval",
    "CallerIdentity",
    "CrlWatcher",
    "DEFAULT_STALENESS",
    "DELEGATION_OID",
    "Delegation",
    "DelegationClient",
    "DelegationError",
    "DelegationPolicy",
    "Link",
    "Principal",
    "PrincipalKind",
    "Refusal",
    "Subtask",
    "SubtaskError",
    "TaskInfo",
    "TaskStatusWatcher",
    "ValueLimit",
    "Verifier",
    "check_grant",
]
