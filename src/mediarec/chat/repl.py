"""``mediarec chat``: an interactive session in the terminal.

Line editing and history come from the standard library's ``readline`` (the history is kept in
``$MEDIAREC_HOME/chat/<catalog>.history``, one per catalog, readable by its owner only). Answers are computed in a worker
thread under a spinner; Ctrl-C abandons the answer and returns to the prompt, Ctrl-D or ``:quit``
leaves. Any bad input gets a one-line hint, never a traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mediarec.chat.render import LiveList, result_table
from mediarec.errors import MediarecError

log = logging.getLogger(__name__)

PROMPT = "mediarec> "
REASON_CHARS = 90

HELP = """\
Ask in your own words: "something like Alien but funnier", "calm piano music for studying".
Feedback on the last list:  more like 2 | not 3 | like 2 but shorter | I liked it | didn't like it
Constraints that stand until lifted:  no horror | from the 90s | an album | a comedy
Tell me what you consumed:  I watched Heat | I listened to Kind of Blue (and liked it)
Commands:
  :constraints   the constraints every list honours, one a line
  :clear [WHAT]  lift one constraint (:clear horror, :clear years, :clear kind, :clear like) or all
  :seen [on|off|auto]  whether lists may bring back what you liked before (auto: as the catalog does);
                 "something to rewatch" allows it for one answer
  :history       your history in this session, exclusions and constraints
  :profile       your interest profile (and the search text made from it)
  :why N         a longer explanation of item N of the last list, and where the list's time went
  :reset         start over from your catalog history
  :save FILE     save this session (interactions, conversation, exclusions) to FILE
  :load FILE     continue a saved session
  :help          this text
  :quit          leave (or Ctrl-D); Ctrl-C cancels an answer in progress"""

_CANCELLED = object()


class Repl:
    def __init__(self, session: Any, console: Console | None = None, history_file: Path | None = None):
        self.session = session
        self.console = console or Console(highlight=False)
        self.history_file = history_file
        self._readline: Any = None
        self.abandoned: list[threading.Thread] = []

    # -- terminal ----------------------------------------------------------------------------
    def _setup_readline(self) -> None:
        try:
            import readline
        except ImportError:  # Windows without pyreadline: plain input() still works
            return
        self._readline = readline
        try:
            readline.set_history_length(1000)
            readline.parse_and_bind("tab: complete")
            cmds = [":constraints", ":clear", ":seen", ":history", ":profile", ":why ", ":reset", ":save ", ":load ", ":help", ":quit"]

            def complete(text: str, state: int):
                hits = [c for c in cmds if c.startswith(text)] if text.startswith(":") else []
                return hits[state] if state < len(hits) else None

            readline.set_completer(complete)
            readline.set_completer_delims(" \t\n")
            if self.history_file is not None and self.history_file.is_file():
                readline.read_history_file(str(self.history_file))
        except (OSError, AttributeError) as e:
            log.debug("readline setup: %s", e)

    def _save_readline(self) -> None:
        if self._readline is None or self.history_file is None:
            return
        try:
            self.history_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.history_file, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
            os.chmod(self.history_file, 0o600)
            self._readline.write_history_file(str(self.history_file))
        except OSError as e:
            log.debug("cannot save the chat history: %s", e)

    def hint(self, text: str) -> None:
        self.console.print(Text("hint: ", style="yellow") + Text(" ".join(str(text).split())), soft_wrap=True)

    def say(self, text: str, style: str | None = None) -> None:
        self.console.print(Text(str(text), style=style or ""), soft_wrap=True)

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> int:
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C must reach the REPL even when it was started with SIGINT ignored (a shell
            # runs background jobs that way, and Python then keeps it ignored): at the prompt it
            # gives a hint, during an answer it cancels (see work()).
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self._setup_readline()
        try:
            while True:
                try:
                    line = input(PROMPT)
                except EOFError:
                    self.console.print()
                    self.say("bye")
                    return 0
                except KeyboardInterrupt:
                    self.console.print()
                    self.hint("Ctrl-D or :quit leaves; Ctrl-C cancels an answer in progress.")
                    continue
                try:
                    if self.handle(line) is False:
                        self.say("bye")
                        return 0
                except KeyboardInterrupt:
                    self.session.cancel()
                    self.say("cancelled")
                except MediarecError as e:
                    self.hint(str(e))
                except Exception as e:  # noqa: BLE001 - a REPL answers every input with one line
                    log.debug("unexpected error", exc_info=True)
                    self.say(f"error: {type(e).__name__}: {' '.join(str(e).split())[:300]}", style="red")
        finally:
            self._save_readline()

    def handle(self, line: str) -> bool | None:
        """Answer one input line; False means quit."""
        text = line.strip()
        if not text:
            self.hint("type a request, feedback such as 'not 2', or :help")
            return None
        if text.startswith(":"):
            return self.command(text)
        if text.lower().rstrip(".!") in ("quit", "exit", "bye", "q"):  # as a newcomer types it, no colon
            return self.command(":quit")
        session, epoch = self.session, self.session.epoch  # read here, before the worker starts
        reply = self.work(lambda: session.send(text, epoch=epoch), live=True)
        if reply is not _CANCELLED:
            self.show_reply(reply)
        return None

    def work(self, fn: Callable[[], Any], label: str = "thinking…", live: bool = False) -> Any:
        """Run fn in a worker thread under a spinner; Ctrl-C abandons it (returns _CANCELLED).
        ``live``: the session's provisional lists replace the spinner as they arrive (the first
        stages' list at once, then the LLM's order), until the answer is complete.

        While it runs, Ctrl-C only sets a flag (no KeyboardInterrupt can land inside the
        spinner's own code and leave the terminal redirected), and the worker blocks SIGINT so
        the signal always reaches this thread.
        """
        box: dict[str, Any] = {}

        def target() -> None:
            if hasattr(signal, "pthread_sigmask"):
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                box["value"] = fn()
            except BaseException as e:  # noqa: BLE001 - handed back to the main thread
                box["error"] = e

        cancelled = threading.Event()
        in_main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, lambda *_: cancelled.set()) if in_main else None
        t = threading.Thread(target=target, name="mediarec-answer", daemon=True)
        shown = LiveList(self.console, label, REASON_CHARS)
        if live:
            self.session.on_update = shown.push
        try:
            t.start()
            with shown:
                while t.is_alive() and not cancelled.is_set():
                    t.join(0.05)
                    shown.refresh()
        except KeyboardInterrupt:  # not in the main thread: the default handler raised
            cancelled.set()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, old)
            if live:
                self.session.on_update = None
        if cancelled.is_set() and t.is_alive():
            self.session.cancel()
            self.abandoned.append(t)
            self.say("cancelled")
            return _CANCELLED
        if "error" in box:
            raise box["error"]
        return box.get("value")

    # -- commands ----------------------------------------------------------------------------
    def command(self, text: str) -> bool | None:
        name, _, arg = text.partition(" ")
        name, arg = name.lower(), arg.strip()
        if name in (":quit", ":q", ":exit"):
            return False
        if name in (":help", ":h", ":?"):
            self.say(HELP)
        elif name == ":history":
            self.show_history()
        elif name == ":constraints":
            held = self.session.constraint_lines()
            self.say("\n".join(held) if held else "No constraints: ask e.g. 'no horror' or 'from the 90s'.")
        elif name == ":clear":
            self.say(self.session.clear(arg))
        elif name == ":seen":
            choice = {"on": True, "yes": True, "off": False, "no": False, "auto": None, "": "show"}.get(arg.lower(), "bad")
            if choice == "bad":
                self.hint("usage: :seen on | :seen off | :seen auto")
                return None
            if choice == "show":
                now = self.session.include_seen
                self.say("Replays: " + ("allowed" if now else "not shown" if now is False else "as the catalog does (auto)")
                         + " (':seen on', ':seen off' or ':seen auto' to change).")
            else:
                self.say(self.session.set_include_seen(choice))
        elif name == ":profile":
            prof = self.work(self.session.profile, "building your profile…")
            if prof is not _CANCELLED:
                self.show_profile(prof)
        elif name == ":why":
            self.why(arg)
        elif name == ":reset":
            self.session.reset()
            self.say("Session reset: back to your catalog history, no exclusions, no constraints.")
        elif name == ":save":
            if not arg:
                self.hint("usage: :save FILE")
                return None
            try:
                p = self.session.save(arg)
            except OSError as e:
                raise MediarecError(f"cannot save to {arg}: {e.strerror or e}") from None
            self.say(f"saved to {p}")
        elif name == ":load":
            if not arg:
                self.hint("usage: :load FILE")
                return None
            from mediarec.chat.session import ChatSession

            self.session = ChatSession.load(arg, self.session.recommender, k=self.session.k)
            s = self.session
            self.say(f"loaded {arg}: {len(s.history())} items in the history, {len(s.exclusions())} excluded, "
                     f"{len(s.turns)} turns")
        else:
            self.hint(f"unknown command {name!r}; :help lists the commands")
        return None

    def why(self, arg: str) -> None:
        shown = self.session.shown
        if not shown:
            self.hint("no list yet: ask for something first, then :why N")
            return
        if not arg.lstrip("#").isdigit():
            self.hint(f"usage: :why N with N from 1 to {len(shown)}")
            return
        n = int(arg.lstrip("#"))
        if not 1 <= n <= len(shown):
            self.hint(f"no item {n} in the last list: choose 1 to {len(shown)}")
            return
        text = self.work(lambda: self.session.explain(n), "explaining…")
        if text is not _CANCELLED:
            item = self.session.catalog.items[shown[n - 1]]
            self.console.print(Text(f"{n}. {item.label}", style="bold"))
            self.say(text)

    # -- output ------------------------------------------------------------------------------
    def show_reply(self, reply: Any) -> None:
        if reply.kind == "recommendations" and reply.result is not None:
            self.say(reply.text.splitlines()[0])
            self.show_result(reply.result)
        elif reply.kind == "error":
            self.hint(reply.text)
        elif reply.kind == "clarify":
            self.say(reply.text.split(" which one?")[0] + " which one?")
            for i, o in enumerate(reply.options, 1):
                self.say(f"  {i}. {o}")
            self.say("answer with the number or the full title", style="dim")
        else:
            self.say(reply.text)
            if reply.result is not None and reply.result.notes:
                for n in reply.result.notes:
                    self.say(n, style="dim")

    def show_result(self, result: Any) -> None:
        self.console.print(result_table(result, REASON_CHARS))
        if result.degraded:
            self.say(f"degraded: {result.degraded_reason}", style="yellow")
        for note in result.notes:
            self.say(note, style="dim")

    def show_history(self) -> None:
        s = self.session
        hist = s.history()
        if not hist:
            self.say("No history yet: tell me what you watched or listened to ('I watched Heat').")
        else:
            table = Table("#", "title", "kind", "event", "rating", title="your history, oldest first")
            for i, x in enumerate(hist, 1):
                it = s.catalog.items[x.item]
                table.add_row(str(i), Text(it.label), it.kind, x.event,
                              "" if x.rating is None else f"{x.rating:g}")
            self.console.print(table)
        if s.excluded:
            self.say("excluded: " + "; ".join(s.catalog.items[i].label for i in s.excluded if i in s.catalog.items))
        if s.bans:
            self.say("no: " + ", ".join(s.bans))

    def show_profile(self, prof: Any) -> None:
        from mediarec.rank.profile import profile_query

        who = "the LLM" if prof.source == "llm" else "your history's genres, tags and decades"
        self.console.print(Text(f"interest profile (from {who})", style="bold"))
        for field in ("genres", "themes", "moods", "eras", "keywords"):
            vals = getattr(prof, field)
            if vals:
                self.say(f"  {field}: {', '.join(vals)}")
        if prof.summary:
            self.say(f"  summary: {prof.summary}")
        q = profile_query(prof)
        if q:
            self.say(f"  search text for vague requests: {q}", style="dim")


def run_repl(args: Any, build: Callable[..., Any]) -> int:
    """The ``mediarec chat`` command; ``build`` assembles the recommender from the catalog
    (:func:`mediarec.app.from_catalog`, which the CLI gives)."""
    from mediarec.config import get_settings
    from mediarec.catalog import load_dataset
    from mediarec.catalog.enrich import apply_summaries

    console = Console(highlight=False)
    settings = get_settings(chroma_url=getattr(args, "chroma_url", None))
    # with the stored `mediarec enrich` summaries, like index, recommend and eval
    catalog = apply_summaries(load_dataset(args.dataset, getattr(args, "data_dir", None)), settings=settings)
    console.print(Text(f"loading {catalog.name} ({len(catalog)} items)…", style="dim"))
    rec = build(catalog, llm=getattr(args, "llm", None),
                                   chroma_url=getattr(args, "chroma_url", None), settings=settings, progress=True,
                                   adapter=getattr(args, "adapter", None))
    if getattr(rec.llm, "adapter_error", None):  # the rankings fall back to retrieval and say why
        console.print(Text(f"the adapter is not used: {rec.llm.adapter_error}", style="yellow"))
    elif rec.llm is not None and getattr(rec.llm, "is_local", False):
        # Load the model here, not in the first answer's worker thread: llama.cpp silences its
        # loading by pointing the process's stdout/stderr at /dev/null for a moment, which would
        # swallow the prompt (and turn off line editing) if it happened while the REPL waits.
        console.print(Text(f"loading {rec.llm.spec}…", style="dim"))
        _ = rec.llm.llama
    if getattr(args, "save_feedback", False):  # a new person may give their id too: chat/feedback.py
        from mediarec.chat.feedback import feedback_session

        session, note = feedback_session(rec, getattr(args, "user", None), bool(getattr(args, "profile", False)))
        console.print(Text(note, style="dim"))
    else:
        from mediarec.chat.session import ChatSession

        session = ChatSession(rec, user=getattr(args, "user", None), use_profile=bool(getattr(args, "profile", False)))
    who = f", user {args.user} ({len(session.history())} items in the history)" if getattr(args, "user", None) else ""
    console.print(Text(f"mediarec chat: {catalog.name}, LLM {rec.llm.spec if rec.llm else 'none'}{who}. "
                       "Ask for something, or :help.", style="bold"))
    repl = Repl(session, console, history_file=settings.layout.chat_history(catalog.name))
    rc = repl.run()
    if repl.abandoned:
        # An abandoned answer may still be inside the model's native code: finalising the
        # interpreter under it can crash, so leave at once (what the session wrote is complete).
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc
