"""`newsletter run`: subscribers' schedules -> APScheduler jobs that call the pipeline, until SIGINT/SIGTERM.

Reads config and subscriber files; writes the jobs to `apscheduler_jobs` in the store's
own database (APScheduler's SQLAlchemy job store), so a restart neither loses nor
duplicates them; everything else goes through the pipeline, exactly as by hand:
- one job per active subscriber, `digest:<id>`, firing at each slot (SlotTrigger asks
  slots.py, so daylight-saving changes neither skip nor double a send) and calling
  `send_digests(only=[id])`, the same call as `newsletter digest --subscriber ID`;
- coalesce, a misfire grace of `schedule.grace_hours` and max_instances=1: after downtime
  each missed digest goes out once (the slot's unique key makes "once" hold regardless),
  and says in its intro that it is late;
- every `schedule.reconcile_seconds` the subscriber files are read again and jobs added,
  rescheduled or removed, so no restart is needed;
- every `pages.poll_seconds` the inbox is ingested (and URL sources, through the
  `ingest_sources` hook) and due deferred messages are retried.
One daemon per store (the `daemon` lock). On SIGINT/SIGTERM the message in flight is
finished, the rest stay queued, and `run` returns.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .config import Config
from .embedding_jobs import embed_new, embed_profiles
from .errors import NewsletterError, RunLocked, UnknownSubscriber
from .models import Schedule, Subscriber
from .pipeline import RunContext, ingest_sources, ingest_summary, open_context, send_digests, send_due
from .slots import current_slot, next_slot
from .sources import ingest

log = logging.getLogger(__name__)

JOBS_TABLE = "apscheduler_jobs"
DIGEST_JOB = "digest:"
# The daemon's own jobs, beside the digest jobs: one thread runs them in turn.
POLL_JOB, RECONCILE_JOB, EMBED_JOB = "poll", "reconcile", "embed-profiles"
HOUSEKEEPING_JOBS = frozenset({POLL_JOB, RECONCILE_JOB, EMBED_JOB})
# A digest that starts this long after its slot was held up by downtime, not by a busy queue.
LATE_AFTER = timedelta(minutes=15)
# How long to wait for the job in flight after a stop signal before abandoning it: its message
# stays `sending` in the ledger and the next start sends it again, with the same Message-ID.
STOP_WAIT = 10.0
SIGNAL_POLL_SECONDS = 0.5  # how soon a SIGINT/SIGTERM that another thread caught stops the daemon

Clock = Callable[[], datetime]
SourcesHook = Callable[[RunContext, datetime], object]


def utc_now() -> datetime:
    return datetime.now(UTC)


class SlotTrigger(BaseTrigger):
    """Fires at each slot of a Schedule; pickled into the job store with the job."""

    __slots__ = ("schedule",)

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        # After a run: the slot after the one that fired. When added: the first slot after now.
        return next_slot(self.schedule, previous_fire_time or now).at

    def __getstate__(self) -> dict[str, Any]:
        return {"version": 1, "schedule": self.schedule}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.schedule = state["schedule"]

    def __str__(self) -> str:
        return f"slots {self.schedule.describe()}"

    def __repr__(self) -> str:
        return f"<SlotTrigger {self.schedule.describe()}>"


# The job store keeps a textual reference to `run_digest_job`, not to a bound method;
# this is where that function finds the running daemon.
_daemon: Daemon | None = None


def run_digest_job(subscriber_id: str) -> None:
    """The job behind `digest:<id>`: the subscriber's digest for their current slot."""
    if _daemon is None:
        log.warning("digest job for %s fired with no daemon running; skipped", subscriber_id)
        return
    _daemon.digest(subscriber_id)


class QuietHousekeepingSkips(logging.Filter):
    """Drops APScheduler's warning that a job was skipped because its last run is still going, for the
    daemon's polling and reconciling only: a long ingest or embedding makes that expected, and the next
    interval runs them. A skipped digest job still warns."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = record.args[0] if isinstance(record.args, tuple) and record.args else None
        return not (str(record.msg).startswith('Execution of job "%s" skipped')
                    and getattr(job, "id", None) in HOUSEKEEPING_JOBS)


_SKIPS = QuietHousekeepingSkips()


@dataclass(frozen=True, slots=True)
class Reconciled:
    added: tuple[str, ...] = ()
    rescheduled: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


class Daemon:
    """The jobs of one store: build with a RunContext, `start()`, later `stop()`."""

    def __init__(self, ctx: RunContext, config: Config, *, clock: Clock = utc_now,
                 ingest_sources: SourcesHook | None = None, send: bool = True) -> None:
        self.ctx = ctx
        self.send = send  # False: digests are planned and queued here, and `newsletter worker`s send them
        self.settings = config.settings
        self.clock = clock
        self.ingest_sources = ingest_sources
        self.stopping = threading.Event()
        self.scheduler = self._scheduler()
        self._profiles_seen: int | None = None  # what the subscribers' phrases were last embedded for
        self._schedules: dict[str, Schedule] = {}  # active subscribers' schedules, as of the last reconcile

    def _scheduler(self) -> BackgroundScheduler:
        schedule = self.settings.schedule
        self._jobs = SQLAlchemyJobStore(engine=self.ctx.store.db.engine, tablename=JOBS_TABLE)
        return BackgroundScheduler(
            jobstores={"default": self._jobs, "housekeeping": MemoryJobStore()},
            # One digest job at a time (each takes the digest lock anyway); housekeeping beside it.
            executors={"default": ThreadPoolExecutor(1), "housekeeping": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": int(timedelta(hours=schedule.grace_hours).total_seconds())},
            timezone=UTC,
        )

    # -- the jobs ---------------------------------------------------------------------------------

    def digest(self, subscriber_id: str) -> None:
        """What `newsletter digest --subscriber ID` does, at the daemon's clock, late-aware and stoppable,
        for ID and everyone whose slot is the same moment and not yet served.

        A thousand people at the default 07:00 are a thousand jobs firing at once: the first one
        ranks and sends them all in one run (a ranker fitted once, everyone scored as matrices),
        and the others find their digest made and return at once.
        """
        now = self.clock()
        only = self._sharing_the_slot(subscriber_id, now)
        if not only:
            log.debug("digest for %s: served already by a run for the same slot", subscriber_id)
            return
        try:
            report = send_digests(self.ctx, now, only=only, late_after=LATE_AFTER,
                                  should_stop=self.stopping.is_set, wait=True, send=self.send)
        except NewsletterError as exc:
            log.error("digest for %s: %s", subscriber_id, exc)
            return
        for error in report.profile_errors:
            log.error("%s", error)
        for result in report.results:
            if result.outcome not in ("sent", "deferred", "failed"):  # sending.py logs those as they happen
                log.info("digest for %s: %s %s", result.subscriber_id, result.outcome, result.detail)

    def _sharing_the_slot(self, subscriber_id: str, now: datetime) -> list[str]:
        """`subscriber_id` plus every subscriber whose current slot is the same moment and has no digest yet;
        empty when that subscriber's own slot is served and nothing of theirs waits to be sent."""
        mine = self._schedules.get(subscriber_id)
        if mine is None:  # not known from a reconcile yet: on their own, as a hand-run digest would be
            return [subscriber_id]
        ledger = self.ctx.store.ledger
        if ledger.slot_taken(subscriber_id, current_slot(mine, now).local_date):
            # The usual case for all but the first job at a slot: one query, not one over everyone sharing it.
            return [subscriber_id] if ledger.waiting(now, [subscriber_id], wall=utc_now()) else []
        slots = {schedule: current_slot(schedule, now) for schedule in set(self._schedules.values())}
        sharing = {sid: slots[schedule] for sid, schedule in self._schedules.items()
                   if slots[schedule].at == slots[mine].at}
        taken = ledger.taken_slots([(sid, slot.local_date) for sid, slot in sharing.items()])
        return sorted({sid for sid, slot in sharing.items() if (sid, slot.local_date) not in taken} | {subscriber_id})

    def retry_due(self) -> None:
        if not self.send:
            return  # the workers retry deferred messages as they come due
        try:
            send_due(self.ctx, self.clock(), should_stop=self.stopping.is_set)
        except RunLocked:
            pass  # a digest run is sending right now, and it sends whatever is due too
        except NewsletterError as exc:
            log.error("retrying queued messages: %s", exc)

    def poll(self) -> None:
        """Ingest the inbox and the URL sources that are due, then retry what is due to be sent."""
        now = self.clock()
        try:
            with self.ctx.store.locks.hold("ingest"):
                before = self.ctx.store.papers.max_id()
                report = ingest(self.ctx.store.papers, self.ctx.folders, now, ())
        except RunLocked:
            log.info("inbox: another ingest is running; next poll")
        except NewsletterError as exc:
            log.error("inbox: %s", exc)
        else:
            if report.pages:
                summary = ingest_summary(report)
                log.info("ingested %s from %s", summary, self.ctx.folders.inbox)
                self.ctx.store.runs.add("ingest", now, self.clock(), ok=not report.problems, summary=summary)
            if report.new_papers:
                embed_new(self.ctx.store, after_id=before)  # after the ingest lock; never raises
        if self.ingest_sources is not None:
            # Due URL sources: fetched, ingested, one log line per fetch (newsletter.fetching).
            try:
                self.ingest_sources(self.ctx, now)
            except NewsletterError as exc:
                log.error("sources: %s", exc)
        self.retry_due()

    def reconcile(self) -> Reconciled:
        """Make the digest jobs match the subscriber files: one per active subscriber, on their schedule."""
        loaded = self.ctx.subscribers.load_all()
        for error in loaded.errors:
            log.error("%s", error)
        wanted = {s.id: s.schedule for s in loaded.subscribers if s.status == "active"}
        self._schedules = wanted
        jobs = {job.id.removeprefix(DIGEST_JOB): job for job in self.scheduler.get_jobs(jobstore="default")
                if job.id.startswith(DIGEST_JOB)}
        added = [sid for sid in wanted if sid not in jobs]
        for sid in added:
            self.scheduler.add_job(run_digest_job, SlotTrigger(wanted[sid]), args=[sid], id=DIGEST_JOB + sid,
                                   name=f"digest for {sid}", jobstore="default", replace_existing=True)
        rescheduled = [sid for sid, job in jobs.items()
                       if sid in wanted and getattr(job.trigger, "schedule", None) != wanted[sid]]
        for sid in rescheduled:
            self.scheduler.reschedule_job(DIGEST_JOB + sid, jobstore="default", trigger=SlotTrigger(wanted[sid]))
        removed = [sid for sid in jobs if sid not in wanted and not self._invalid(sid)]
        for sid in removed:
            self.scheduler.remove_job(DIGEST_JOB + sid, jobstore="default")
        self._embed_changed_profiles([s for s in loaded.subscribers if s.status == "active"])
        done = Reconciled(tuple(added), tuple(rescheduled), tuple(removed))
        for verb, ids in (("scheduled", done.added), ("rescheduled", done.rescheduled), ("unscheduled", done.removed)):
            for sid in ids:
                log.info("%s %s%s", verb, sid, f": {wanted[sid].describe()}" if sid in wanted else "")
        return done

    def _embed_changed_profiles(self, active: list[Subscriber]) -> None:
        """When someone's topics, excludes or liked titles changed (or at start), embed their phrases soon, in
        the housekeeping thread: the digest job then finds them stored."""
        seen = hash(tuple((s.id, s.topics, s.exclude, s.liked) for s in active))
        if seen == self._profiles_seen or not active:
            return
        self._profiles_seen = seen
        self.scheduler.add_job(self.embed_profiles, args=[active], id=EMBED_JOB, jobstore="housekeeping",
                               executor="housekeeping", replace_existing=True)

    def embed_profiles(self, active: list[Subscriber]) -> None:
        embed_profiles(self.ctx.store, self.ctx.make_ranker, active, self.clock())

    def _invalid(self, subscriber_id: str) -> bool:
        """A file that exists but does not load keeps its job: fixing a typo must not cost a digest."""
        try:
            self.ctx.subscribers.get(subscriber_id)
        except UnknownSubscriber:
            return False
        except NewsletterError:
            return True
        return False

    # -- running ----------------------------------------------------------------------------------

    def open(self) -> None:
        """Start the scheduler paused, with the job store loaded; `resume()` lets jobs fire."""
        global _daemon
        _daemon = self
        logging.getLogger("apscheduler.scheduler").addFilter(_SKIPS)  # the same filter once, however many daemons
        # APScheduler creates its table in a transaction that reads first and writes after, which SQLite refuses
        # at once ("database is locked") when another connection wrote in between; under the write lock it can't.
        with self.ctx.store.db.write() as conn:
            self._jobs.jobs_t.create(conn, checkfirst=True)
        self.scheduler.start(paused=True)

    def start(self) -> None:
        self.open()  # reconcile before any job fires, so a missed digest runs on its current schedule
        self.reconcile()
        reconcile_every = self.settings.schedule.reconcile_seconds
        poll_every = self.settings.pages.poll_seconds
        self.scheduler.add_job(self.reconcile, IntervalTrigger(seconds=reconcile_every), id=RECONCILE_JOB,
                               jobstore="housekeeping", executor="housekeeping")
        self.scheduler.add_job(self.poll, IntervalTrigger(seconds=poll_every), id=POLL_JOB, jobstore="housekeeping",
                               executor="housekeeping", next_run_time=self.clock())
        self.scheduler.resume()
        log.info("running: %d digest jobs, inbox every %d s, subscribers every %d s",
                 len(self.scheduler.get_jobs(jobstore="default")), poll_every, reconcile_every)

    def stop(self) -> bool:
        """Finish the message in flight, leave the rest queued, and stop the scheduler.

        False when a job was still running after STOP_WAIT (e.g. a stalled SMTP server):
        the caller may then exit without it, since the ledger already says what to resend.
        """
        global _daemon
        self.stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        # shutdown(wait=True) would wait without limit; the pools finish their current job and then stop.
        finished = threading.Thread(target=_wait_for_pools, args=(self.scheduler,), daemon=True)
        finished.start()
        finished.join(STOP_WAIT)
        if finished.is_alive():
            log.warning("a job did not finish within %.0f s; its message stays `sending` and is sent again "
                        "on the next start", STOP_WAIT)
        _daemon = None
        log.info("stopped")
        return not finished.is_alive()


def _wait_for_pools(scheduler: BackgroundScheduler) -> None:
    for alias in ("default", "housekeeping"):
        executor = scheduler._executors.get(alias)  # noqa: SLF001 - APScheduler 3 has no public accessor
        if executor is not None:
            executor.shutdown(wait=True)


def run_daemon(config: Config, *, stop: threading.Event | None = None, clock: Clock = utc_now,
               ingest_sources: SourcesHook | None = None, send: bool = True) -> bool:
    """Run until `stop` is set, or SIGINT/SIGTERM when called from the main thread; RunLocked if one runs already.

    Returns False when a job had to be abandoned at the stop (see Daemon.stop).
    """
    stop = stop or threading.Event()
    if ingest_sources is None and config.settings.sources.urls:
        ingest_sources = _fetch_due_sources(config)
    with open_context(config) as ctx, ctx.store.locks.hold("daemon"):
        daemon = Daemon(ctx, config, clock=clock, ingest_sources=ingest_sources, send=send)
        restore = on_stop_signals(stop)
        clean = False
        try:
            daemon.start()
            # In short waits, not one: a signal the kernel hands to another thread (the scheduler's, onnxruntime's)
            # is run by Python in the main thread only once that thread wakes, and an untimed wait never does.
            while not stop.wait(SIGNAL_POLL_SECONDS):
                pass
            log.info("stopping: finishing the message in flight")
        finally:
            clean = daemon.stop()
            restore()
    return clean


def _fetch_due_sources(config: Config) -> SourcesHook:
    """The poll's hook for `sources.urls`: fetch what is due, exactly as `newsletter fetch` does by hand."""

    def fetch(_ctx: RunContext, now: datetime) -> object:
        return ingest_sources(config, now, only_due=True)

    return fetch


def on_stop_signals(stop: threading.Event) -> Callable[[], None]:
    """Set `stop` on SIGINT/SIGTERM (from the main thread only); returns what puts the old handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
