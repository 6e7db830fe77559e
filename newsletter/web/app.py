"""The preference centre and the operator's preview: a Starlette app over one RunContext.

Reads subscribers, papers, the ledger and votes; writes subscriber files (through
the repository: round-trip, locked, compare-and-swap) and votes. Every page a
subscriber reaches is opened by a signed token from an email; the token decides
whose data is shown, and nothing else does. Pages work without JavaScript.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..deliver import serialise
from ..errors import BadToken, EditConflict, NewsletterError, ProfileError, UnknownSubscriber
from ..manage import edit_subscriber, like_paper, record_vote, set_status, subscriber_details
from ..models import Digest, ScoredPaper, Subscriber
from ..pipeline import RunContext, compose, plan, to_message
from ..planning import plan_digests
from ..slots import describe_next
from ..subscribers.edits import Edit, clean
from ..subscribers.files import MAX_TITLE
from ..validation import time_zone_names
from .forms import read_preferences, schedule_values
from .guard import Guard, RateLimiter, loopback

Clock = Callable[[], datetime]
FORM_LIMITS = {"max_files": 0, "max_fields": 20}
ONE_CLICK = "One-Click"


@dataclass(frozen=True, slots=True)
class WebOptions:
    admin_token: str | None = None
    rate_limit: int = 10
    monotonic: Callable[[], float] | None = None  # the rate limiter's clock (tests step it)


def create_app(ctx: RunContext, options: WebOptions = WebOptions(), now: Clock = lambda: datetime.now(UTC)) -> Guard:
    """The ASGI app; `ctx` stays open for the app's life (the caller closes it)."""
    web = _Web(ctx, options, now)
    routes = [
        Route("/", web.home),
        Route("/static/site.css", web.stylesheet),
        Route("/preferences/{token}", web.preferences, methods=["GET", "POST"]),
        Route("/preferences/{token}/next", web.next_digest),
        Route("/unsubscribe/{token}", web.unsubscribe, methods=["GET", "POST"]),
        Route("/vote/{token}", web.vote, methods=["GET", "POST"]),
        Route("/view/{token}", web.view),
        Route("/preview", web.preview_list),
        Route("/preview/{subscriber_id}", web.preview_one),
        Route("/preview/{subscriber_id}/html", web.preview_html),
    ]
    app = Starlette(routes=routes, exception_handlers={NewsletterError: web.error_page})  # type: ignore[dict-item]
    return Guard(app)


class _Web:
    def __init__(self, ctx: RunContext, options: WebOptions, now: Clock) -> None:
        self.ctx = ctx
        self.options = options
        self.now = now
        folder = Path(__file__).with_name("templates")  # the pages ship with this package
        self.folder = folder
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=True,
                                      undefined=jinja2.StrictUndefined)
        limiter_args: dict[str, Any] = {"clock": options.monotonic} if options.monotonic else {}
        self.limiter = RateLimiter(options.rate_limit, **limiter_args)

    # -- plumbing ----------------------------------------------------------------------------------

    def page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        body = self.env.get_template(template).render(sender_name=self.ctx.sender.name, **context)
        return HTMLResponse(body, status_code=status)

    def message(self, title: str, text: str, status: int) -> HTMLResponse:
        return self.page("message.html.j2", status, title=title, text=text)

    async def error_page(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, BadToken):
            return self.message("This link does not work", f"{exc}. Use the newest link from one of your emails.",
                                400)
        if isinstance(exc, UnknownSubscriber):
            return self.message("No such subscription", "This subscription no longer exists; nothing was changed.",
                                404)
        if isinstance(exc, ProfileError):  # a bad subscriber file: the operator must fix it
            return self.message("This profile cannot be opened",
                                "The profile has a problem the operator must fix; nothing was changed.", 500)
        raise exc

    async def form(self, request: Request) -> dict[str, str]:
        async with request.form(**FORM_LIMITS) as data:
            return {key: value for key, value in data.items() if isinstance(value, str)}

    def stylesheet(self, request: Request) -> Response:
        return FileResponse(self.folder / "site.css", media_type="text/css")

    def home(self, request: Request) -> Response:
        return self.message(self.ctx.sender.name, "Open the preferences link at the foot of any digest email.", 200)

    def subscriber_for(self, purpose: str, token: str) -> Subscriber:
        subscriber_id = self.ctx.signer.verify(purpose, token)  # type: ignore[arg-type]
        return self.ctx.subscribers.get(subscriber_id)

    # -- the preference page -------------------------------------------------------------------------

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        if request.method == "GET":
            subscriber = await run_in_threadpool(self.subscriber_for, "manage", token)
            return await run_in_threadpool(self.render_preferences, token, subscriber.id,
                                           saved=request.query_params.get("saved", ""))
        subscriber_id = self.ctx.signer.verify("manage", token)
        form = await self.form(request)
        self.ctx.signer.check_csrf(subscriber_id, form.get("csrf", ""))
        return await run_in_threadpool(self.apply, token, subscriber_id, form)

    def render_preferences(self, token: str, subscriber_id: str, *, saved: str = "", status: int = 200,
                           errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                           notice: str = "", like: str = "") -> Response:
        details = subscriber_details(self.ctx, subscriber_id)
        s = details.subscriber
        shown = values or {"topics": "\n".join(s.topics), "exclude": "\n".join(s.exclude),
                           "max_papers": str(s.max_papers or ""), **schedule_values(s.schedule)}
        default = self.ctx.subscribers.default_schedule
        return self.page("preferences.html.j2", status, s=s, details=details, token=token, values=shown,
                         errors=defaultdict(str, errors or {}), saved=saved[:40], notice=notice,
                         csrf=self.ctx.signer.csrf_token(s.id), default_max=self.ctx.policy.max_papers,
                         zones=time_zone_names(), default_schedule=default.describe(), like=like,
                         next_send=describe_next(s.schedule, self.now()) if s.status == "active" else "")

    def apply(self, token: str, subscriber_id: str, form: dict[str, str]) -> Response:
        action = form.get("action", "")
        version = form.get("version") or None
        if action == "save":
            current = self.ctx.subscribers.read(subscriber_id)
            result = read_preferences(current.subscriber, form, self.ctx.subscribers.default_schedule)
            if result.errors:
                return self.render_preferences(token, subscriber_id, status=422, errors=result.errors,
                                               values=result.values)
            try:
                self.ctx.subscribers.save(result.subscriber, expected_version=version)
            except EditConflict:
                return self.render_preferences(
                    token, subscriber_id, status=409, values=result.values,
                    notice="Your profile was changed elsewhere after this page was opened, so nothing was saved. "
                           "The form still shows your edit; the page below it shows the profile as it is now.")
            return self.saved(token, "preferences")
        if action in ("pause", "resume", "unsubscribe"):
            status = {"pause": "paused", "resume": "active", "unsubscribe": "unsubscribed"}[action]
            try:
                set_status(self.ctx, subscriber_id, status, now=self.now())  # type: ignore[arg-type]
            except UnknownSubscriber:
                raise
            except ProfileError as exc:  # e.g. resuming a profile with no topic: say what to fix, here
                return self.render_preferences(token, subscriber_id, status=422,
                                               notice=f"Nothing changed: {problem_of(exc)}.")
            return self.saved(token, action)
        if action == "like":
            return self.like(token, subscriber_id, form.get("like", ""))
        if action == "unlike":
            try:
                edit_subscriber(self.ctx, subscriber_id, Edit(unlike=(form.get("title", ""),)))
            except UnknownSubscriber:
                raise
            except ProfileError as exc:  # already removed elsewhere, or the last entry of a profile without topics
                return self.render_preferences(token, subscriber_id, status=422,
                                               notice=f"Nothing changed: {problem_of(exc)}.")
            return self.saved(token, "unliked")
        if action == "undo-vote" and form.get("paper_id", "").isdigit():
            self.ctx.store.votes.undo(subscriber_id, int(form["paper_id"]))
            return self.saved(token, "vote")
        return self.message("Unknown action", "The form asked for something this page does not do.", 400)

    def like(self, token: str, subscriber_id: str, typed: str) -> Response:
        """Add a liked paper by title; the list then shows which stored paper the title names."""
        title = clean(typed)
        problem = ""
        if not title:
            problem = "type the title of a paper you liked"
        elif len(title) > MAX_TITLE:
            problem = f"a title is at most {MAX_TITLE} characters"
        else:
            try:
                like_paper(self.ctx, subscriber_id, title)
            except UnknownSubscriber:
                raise
            except ProfileError as exc:  # e.g. a 101st entry: the file's own rule, next to the field
                problem = problem_of(exc)
        if problem:
            return self.render_preferences(token, subscriber_id, status=422, errors={"like": problem},
                                           values=None, like=typed[:MAX_TITLE + 1])
        return self.saved(token, "liked")

    def saved(self, token: str, what: str) -> Response:
        # Post/redirect/get: reloading the page never sends the form twice.
        return RedirectResponse(f"/preferences/{token}?saved={what}#status", status_code=303)

    async def next_digest(self, request: Request) -> Response:
        subscriber = await run_in_threadpool(self.subscriber_for, "manage", request.path_params["token"])
        html_text = await run_in_threadpool(self.next_email_html, subscriber)
        return framable(html_text)

    def next_email_html(self, subscriber: Subscriber) -> str:
        (digest,) = plan_digests(self.ctx.store, self.ctx.make_ranker, self.ctx.policy,
                                 [replace(subscriber, status="active")], self.now())
        # No "view in browser" link: this email was never sent, so there is nothing to view.
        links = self.ctx.signer.links_for(subscriber.id, paper_ids=[s.paper.id for s in digest.papers])
        return self.ctx.renderer.render(digest, links).html

    # -- links from the email ----------------------------------------------------------------------------

    async def unsubscribe(self, request: Request) -> Response:
        """RFC 8058: a POST of `List-Unsubscribe=One-Click` unsubscribes at once (200, no redirect);
        a GET changes nothing (link scanners prefetch) and asks for the same POST with a button."""
        token = request.path_params["token"]
        subscriber = await run_in_threadpool(self.subscriber_for, "unsubscribe", token)
        if request.method == "GET":
            return self.page("confirm.html.j2", title="Unsubscribe?", action=f"/unsubscribe/{token}",
                             fields={"List-Unsubscribe": ONE_CLICK}, button="Unsubscribe",
                             text=f"Stop all digests to {subscriber.email}? You can subscribe again from your "
                                  "preferences page.")
        if not self.limiter.allow(token):
            return self.message("Too many requests", "Please wait a minute and try again.", 429)
        form = await self.form(request)
        if form.get("List-Unsubscribe") != ONE_CLICK:
            return self.message("Nothing changed", "An unsubscribe request must say List-Unsubscribe=One-Click.",
                                400)
        await run_in_threadpool(lambda: set_status(self.ctx, subscriber.id, "unsubscribed", now=self.now()))
        manage = self.ctx.signer.links_for(subscriber.id).manage.removeprefix(self.ctx.signer.base_url)
        return self.page("message.html.j2", title="You are unsubscribed", link=manage,
                         text=f"No more digests will be sent to {subscriber.email}.")

    async def vote(self, request: Request) -> Response:
        token = request.path_params["token"]
        vote = self.ctx.signer.verify_vote(token)
        subscriber = await run_in_threadpool(self.ctx.subscribers.get, vote.subscriber_id)
        papers = await run_in_threadpool(self.ctx.store.papers.get, [vote.paper_id])
        if not papers:
            return self.message("No such paper", "This paper is no longer stored; nothing was recorded.", 404)
        title = papers[0].title
        words = "more" if vote.direction == "more" else "fewer"
        if request.method == "GET":
            return self.page("confirm.html.j2", title=f"{words.capitalize()} papers like this?",
                             action=f"/vote/{token}", fields={"csrf": self.ctx.signer.csrf_token(subscriber.id)},
                             button=f"Yes, {words} like this", text=f"“{title}”")
        if not self.limiter.allow(token):
            return self.message("Too many requests", "Please wait a minute and try again.", 429)
        form = await self.form(request)
        self.ctx.signer.check_csrf(subscriber.id, form.get("csrf", ""))
        await run_in_threadpool(record_vote, self.ctx, subscriber.id, vote.paper_id, vote.direction, self.now())
        manage = self.ctx.signer.links_for(subscriber.id).manage.removeprefix(self.ctx.signer.base_url)
        return self.page("message.html.j2", title="Thank you", link=manage,
                         text=f"Your next digest will have {words} papers like “{title}”.")

    async def view(self, request: Request) -> Response:
        view = self.ctx.signer.verify_view(request.path_params["token"])
        html_text = await run_in_threadpool(self.sent_email_html, view.subscriber_id, view.message_id)
        if html_text is None:
            return self.message("Email not found", "This email is no longer stored.", 404)
        return framable(html_text)

    def sent_email_html(self, subscriber_id: str, message_id: str) -> str | None:
        subscriber = self.ctx.subscribers.get(subscriber_id)
        sent = self.ctx.store.ledger.sent_digest(subscriber_id, message_id)
        if sent is None:
            return None
        by_id = {p.id: p for p in self.ctx.store.papers.get([pid for pid, _, _ in sent.papers])}
        chosen = tuple(ScoredPaper(by_id[pid], score, reason) for pid, score, reason in sent.papers if pid in by_id)
        digest = Digest(subscriber, chosen, sent.issued_at, sent.window_start, sent.window_end,
                        sent.through_batch, sent.candidate_count)
        links = self.ctx.signer.links_for(subscriber_id, message_id=message_id, paper_ids=list(by_id))
        return self.ctx.renderer.render(digest, links).html

    # -- the operator's preview ------------------------------------------------------------------------------

    def admin(self, request: Request) -> Response | None:
        """None when the operator may see previews; the refusal otherwise."""
        token = self.options.admin_token
        if token is None:
            if loopback(request.client, request.headers):
                return None
            return self.message("Not here", "The preview answers on the loopback interface only (not through a "
                                "proxy); set the admin token to reach it from elsewhere.", 403)
        if request.headers.get("authorization", "") == f"Bearer {token}":
            return None
        return self.message("Not allowed", "The preview needs the admin token (Authorization: Bearer ...).", 401)

    async def preview_list(self, request: Request) -> Response:
        refused = self.admin(request)
        if refused:
            return refused
        planned = await run_in_threadpool(plan, self.ctx, self.now())
        return self.page("preview_list.html.j2", title="Preview", plan=planned)

    async def preview_one(self, request: Request) -> Response:
        refused = self.admin(request)
        if refused:
            return refused
        message, rendered = await run_in_threadpool(self.preview_message, request.path_params["subscriber_id"])
        head = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").replace("\r\n", "\n")
        return self.page("preview_one.html.j2", title=f"Preview: {request.path_params['subscriber_id']}",
                         subscriber_id=request.path_params["subscriber_id"], headers=head, text=rendered.text)

    async def preview_html(self, request: Request) -> Response:
        refused = self.admin(request)
        if refused:
            return refused
        _, rendered = await run_in_threadpool(self.preview_message, request.path_params["subscriber_id"])
        return framable(rendered.html)

    def preview_message(self, subscriber_id: str) -> tuple[bytes, Any]:
        subscriber = self.ctx.subscribers.get(subscriber_id)
        (digest,) = plan_digests(self.ctx.store, self.ctx.make_ranker, self.ctx.policy, [subscriber], self.now())
        composed = compose(self.ctx, digest, sent=False)  # never sent: no "View in browser" (it would 404)
        return serialise(to_message(self.ctx, digest, composed)), composed.rendered


def problem_of(exc: ProfileError) -> str:
    """A file rule's complaint without the file's path: the person on the page never sees the path."""
    first = (str(exc).splitlines() or [""])[0]
    head, colon, rest = first.partition(": ")
    if colon and head.endswith((".yaml", ".yml")):  # "subscribers/alice.yaml: key: problem"
        first = rest
    return first.removeprefix("(top level): ")


def framable(body: str) -> HTMLResponse:
    """An email's HTML, which our own pages may frame (Guard gives it the email CSP).

    Its links open in the whole window: our own pages refuse to be framed, and a
    paper's page should not open inside the preference page either.
    """
    body = body.replace("<head>", '<head><base target="_top">', 1)
    return HTMLResponse(body, headers={"X-Frame-Options": "SAMEORIGIN"})

