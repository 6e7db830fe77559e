"""A large run's ranking and rendering in a process of its own, while the run's own process sends.

In a thread, producing digests and sending them take turns on one interpreter: a
thousand digests cost the sum of both. Here a child process (a fresh interpreter,
`python -m newsletter.producer_process`: no threads, locks or database connections
inherited, and unlike multiprocessing's spawn it never re-runs the caller's main
script) rebuilds the run context from the config, runs the same DigestProducer, and
says over a pipe after each stored batch; the parent's senders claim from the ledger
as before. The ledger stays the one record: a child that dies loses at most the batch
it had not committed, which the next run plans again.

The child never outlives the run: on Linux the kernel kills it when the thread that
started it ends (PR_SET_PDEATHSIG), and everywhere a watchdog ends it once its parent
is gone. It ignores SIGINT, so a Ctrl-C reaches the parent alone, which decides.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

from .config import Config
from .errors import ProducerFailed
from .models import Subscriber
from .pipeline import DigestProducer, Produced, RunContext, SubscriberResult, open_context
from .planning import reference_papers, reusing
from .sending import Arrivals
from .slots import Slot
from .stage_clock import StageClock

WATCHDOG_SECONDS = 1.0  # how often the child checks that its parent is still there
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class ProducerChild:
    """The child process, started before its job: it imports, opens the run's context and fits the ranker for
    the run's moment while the parent still reads the subscriber files and sorts out who is due (about 1.5 s
    each for 10,000 subscribers).

    `hand` gives it the digests to make; `cancel` ends it when the run needs no process after all.
    """

    def __init__(self, config: Config, now: datetime) -> None:
        reports_read, reports_write = os.pipe()
        job_read, job_write = os.pipe()
        package_root = str(Path(__file__).resolve().parents[1])  # the child imports this very package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                       os.environ.get("PYTHONPATH")]))}
        self.reports = Connection(reports_read)
        self._job = Connection(job_write)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(job_read), str(reports_write), str(os.getpid())],
                pass_fds=(job_read, reports_write), stdin=subprocess.DEVNULL, env=env)
        except OSError:
            self.reports.close()
            self._job.close()
            raise
        finally:  # the child's ends: once it exits (or dies), reading ours gives EOF
            os.close(job_read)
            os.close(reports_write)
        root = logging.getLogger()
        self._send((config, now, root.level if root.handlers else None))

    def hand(self, due: list[tuple[Subscriber, Slot]], late_after: timedelta | None) -> None:
        """The job, for the moment the child was started with: from here on the child's reports say how it
        goes (a child that died says EOF)."""
        self._send((due, late_after))
        self._job.close()

    def cancel(self) -> None:
        """End a child that was never handed a job; it has written nothing (it only opened the store)."""
        if self._job.closed:
            return
        self._job.close()
        self.reports.close()
        self.process.kill()
        self.process.wait()

    def _send(self, item: object) -> None:
        try:
            self._job.send(item)
        except OSError:  # it died at once: reading its reports gives EOF, and join() says so
            pass


class ProducerProcess:
    """DigestProducer's interface (start, join, results, queued, arrivals), run in a child process."""

    def __init__(self, config: Config, due: Sequence[tuple[Subscriber, Slot]], now: datetime,
                 late_after: timedelta | None, child: ProducerChild | None = None) -> None:
        """`child`: one started ahead for the same `now` (see ProducerChild); else `start` starts it."""
        self.results: list[SubscriberResult] = []
        self.queued: dict[str, Produced] = {}
        self.clock = StageClock()  # the child's, once it has finished
        self.arrivals = Arrivals(len(due))
        self._failure: BaseException | None = None
        self._config, self._due, self._now, self._late_after = config, list(due), now, late_after
        self._child = child
        self._listener = threading.Thread(target=self._listen, name="producer-listener", daemon=True)

    def start(self) -> None:
        if self._child is None:
            self._child = ProducerChild(self._config, self._now)
        self._child.hand(self._due, self._late_after)
        self._listener.start()

    def join(self) -> None:
        """Wait for the child to finish; raise what it failed with (or ProducerFailed if it died)."""
        if self._child is None:
            return
        if self._listener.ident is not None:  # started
            self._listener.join()
        self._child.process.wait()
        if self._failure is not None:
            raise self._failure

    def _listen(self) -> None:
        assert self._child is not None
        reports, process = self._child.reports, self._child.process
        try:
            while True:
                try:
                    kind, payload = reports.recv()
                except (EOFError, OSError):
                    self._failure = ProducerFailed(
                        f"the process preparing digests stopped (exit code {process.wait()}); what it "
                        "stored is queued, the rest is planned again by the next run")
                    return
                if kind == "stored":
                    self.arrivals.stored()
                elif kind == "finished":
                    self.results, self.queued, self.clock.seconds = payload
                    return
                else:  # "failed"
                    self._failure = payload
                    return
        finally:
            reports.close()
            self.arrivals.done()


class _PipeSignal:
    """The child's side of Arrivals: each stored batch is one message to the parent."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def stored(self) -> None:
        self._conn.send(("stored", None))

    def done(self) -> None:
        pass  # the "finished" or "failed" message that follows says it


def _child(job_fd: int, reports_fd: int, parent: int) -> None:
    """The child process: read the config, open the context, read the job, produce, report.

    The job comes second so the context opens while the parent still works out who is due;
    a parent that needs no process after all closes the pipe (or kills us) instead.
    """
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with Connection(job_fd) as job, Connection(reports_fd) as conn:
        try:
            config, now, logging_level = job.recv()
        except EOFError:
            return
        if logging_level is not None:  # the parent logs somewhere (the CLI: stderr); so do we, alike
            logging.basicConfig(level=logging_level, format="%(asctime)s %(levelname)s %(message)s",
                                stream=sys.stderr)
        try:
            _produce(job, conn, config, now)
        except BaseException as exc:  # told to the parent, which raises it in the run's thread
            with contextlib.suppress(OSError):  # a parent that cancelled us no longer listens
                conn.send(("failed", _sendable(exc)))


def _produce(job: Connection, conn: Connection, config: Config, now: datetime) -> None:
    with open_context(config) as ctx:
        ctx = _with_fitted_ranker(ctx, now)
        # What is loaded by now (scikit-learn, the model, the fitted ranker) lives as long as the process: out of
        # the collector's way, which walked all of it again in every full collection (4% of the run's CPU).
        gc.freeze()
        try:
            due, late_after = job.recv()
        except EOFError:
            return  # the run needed no process after all
        producer = DigestProducer(ctx, due, now, late_after, arrivals=_PipeSignal(conn))
        producer.run()
    conn.send(("finished", (producer.results, producer.queued, producer.clock.seconds)))


def _with_fitted_ranker(ctx: RunContext, now: datetime) -> RunContext:
    """The context, its ranker fitted on the run's reference papers already (loading scikit-learn and the
    model on the way: about 2 s) while the parent still reads the subscriber files. Papers ingested
    meanwhile change the reference, and the run then fits a ranker of its own."""
    reference = reference_papers(ctx.store, now)
    return replace(ctx, make_ranker=reusing(ctx.make_ranker, ctx.make_ranker(reference), reference))


def _sendable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else one that says what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return ProducerFailed(f"preparing digests failed: {type(exc).__name__}: {exc}")
    return exc


def _die_with_parent(parent: int) -> None:
    """End this process when the parent is gone: the kernel's death signal where there is one, a watchdog
    everywhere (it also covers a parent that died before the signal was set)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no prctl (another libc): the watchdog is enough
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_SECONDS)
        os._exit(1)  # no cleanup: the parent is gone, and the ledger rolls back an unfinished batch

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()




if __name__ == "__main__":
    _child(*(int(arg) for arg in sys.argv[1:4]))
