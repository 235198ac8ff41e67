"""What the servicers share: the stores (`Stores`), plus settings, auth, the observer, and
the parts app.py builds once and hands to every servicer (the use-cases, the policy and plan
stores with their caches, the dunning engine, the report builder and the digest)."""

from __future__ import annotations

from dataclasses import dataclass

from sessiongate.config import Settings
from sessiongate.reporting.builder import ReportBuilder
from sessiongate.reporting.digest import Digest
from sessiongate.service.auth import Authenticator
from sessiongate.service.rpc import Observer
from sessiongate.store.plans import PlanStore
from sessiongate.store.policies import PolicyCache, PolicyStore
from sessiongate.store.stores import Stores
from sessiongate.usecases.account_state import AccountLookup
from sessiongate.usecases.dunning import DunningEngine
from sessiongate.usecases.login import LoginChecker


@dataclass(kw_only=True)
class Runtime(Stores):
    settings: Settings
    auth: Authenticator
    observer: Observer
    policies: PolicyStore
    policy_cache: PolicyCache  # what login checks read; an upsert puts its policy here too
    plans: PlanStore  # with its plan cache: an upserted plan is seen at once here
    engine: DunningEngine
    lookup: AccountLookup
    logins: LoginChecker
    reports: ReportBuilder  # SendReport's, the same as the monthly job's
    digest: Digest  # SendDigest's, the same as the daily job's
