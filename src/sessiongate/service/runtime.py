"""What the servicers share: the stores (`Stores`), plus settings, auth and the observer."""

from __future__ import annotations

from dataclasses import dataclass

from sessiongate.config import Settings
from sessiongate.service.auth import Authenticator
from sessiongate.service.rpc import Observer
from sessiongate.store.stores import Stores


@dataclass(kw_only=True)
class Runtime(Stores):
    settings: Settings
    auth: Authenticator
    observer: Observer
