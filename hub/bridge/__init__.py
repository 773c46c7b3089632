"""`engine-hub bridge`: the replaced systems' files forwarded to a hub without code changes.

`files` parses what the old systems wrote and `ledgers` decides what is new (both sans-I/O);
`runner` is the polling loop that reads the directory and sends through `hub.client`.
"""

from __future__ import annotations

from hub.bridge.ledgers import Ledger
from hub.bridge.runner import Bridge

__all__ = ["Bridge", "Ledger"]
