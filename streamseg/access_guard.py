"""Ends a worker at the first sign that Kafka or Redis refuses it (see :class:`AccessGuard`).

The worker's agents, timers and Faust's own start-up hand every Kafka error
they meet to one guard (:func:`streamseg.app.create_app` wires it), and
``streamseg worker`` raises the refusal it recorded, which the command line
answers as one line (``streamseg.cli_errors``).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

from streamseg.errors import AccessRefused, StoreRefused
from streamseg.kafka_security import access_denied, error_options, principal
from streamseg.settings import Settings

log = logging.getLogger(__name__)


class AccessGuard:
    """Ends the worker at the first sign that the cluster refuses it, with one error line.

    A wrong password, an untrusted certificate or a missing ACL is no outage:
    every retry meets it again. Left alone, Faust logs a traceback for the
    service it crashes (its leader topic, the consumer group), our timers log a
    warning per tick, and the model-topic task dies. Every place that sees such
    an error hands it here; the first one stops the worker gracefully (SIGTERM
    to itself: Faust's own shutdown, nothing acknowledged that was not
    processed) and ``streamseg worker`` prints it as its last line and exits 1.
    """

    def __init__(self, settings: Settings) -> None:
        self.options = error_options(settings)
        self.who = principal(settings)
        self.denied: AccessRefused | None = None
        #: how to stop the worker; None (an app not run by ``streamseg worker``): errors go
        #: their usual way
        self.stop: Callable[[], None] | None = None
        self._stopping = False

    def arm(self) -> None:
        """Stop the worker through its SIGTERM handler (Faust's graceful shutdown)."""
        self.stop = lambda: os.kill(os.getpid(), signal.SIGTERM)

    def record(self, exc: BaseException) -> bool:
        """Remember the first refusal; True if ``exc`` is one."""
        denied = access_denied(exc, self.options, who=self.who)
        if denied is not None and self.denied is None:
            self.denied = denied
        return denied is not None

    def stop_for(self, exc: BaseException) -> bool:
        """True, and the worker stopping, if ``exc`` is the cluster refusing us."""
        if self.stop is None or not self.record(exc):
            return False
        if not self._stopping:  # once: other tasks meet the same refusal meanwhile
            self._stopping = True
            log.info("stopping: %s refused this worker (%s)",
                     "Redis" if isinstance(self.denied, StoreRefused) else "Kafka", type(exc).__name__)
            self.stop()
        return True
