"""What `resonate demo` shows a person: a progress bar while the catalog is embedded, a live
table of the listeners' lists, the latency summary. Client libraries' logs go to a file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.procs import open_private_log
from schemas.events import Recommendation

# Libraries that configure console handlers of their own (pymilvus) are sent to the file too.
_OWN_HANDLERS = ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer")


def quiet_logging(log_path: Path) -> Path:
    """Every log record of this process (ours and the client libraries') to ``log_path``."""
    import pymilvus  # noqa: F401 - its import installs the console handlers replaced here

    open_private_log(log_path).close()  # created 0600; FileHandler appends to it as it is
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in _OWN_HANDLERS:
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.captureWarnings(True)
    return log_path


class RichReport:
    """``infra.demo.DemoReport`` drawn with rich; ``titles`` names tracks (id -> label)."""

    def __init__(self, *, console: Console, titles: dict[str, str], top: int = 3) -> None:
        self.console = console
        self.titles = titles
        self.top = top
        self._progress: Progress | None = None
        self._task: Any = None
        self._live: Live | None = None
        self._last: dict[str, str] = {}  # listener -> what they just did
        self._lists: dict[str, Recommendation] = {}

    def catalog_progress(self, stored: int, total: int) -> None:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("embedding the catalog"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._task = self._progress.add_task("catalog", total=total)
            self._progress.start()
        self._progress.update(self._task, completed=stored)
        if stored >= total:
            self._progress.stop()

    def note(self, text: str) -> None:
        if self._progress is not None and not self._progress.finished:
            self._progress.stop()
        self.console.print(f"[dim]•[/] {text}")

    def _name(self, track_id: str) -> str:
        return self.titles.get(track_id, track_id)

    def _table(self) -> Table:
        table = Table(title="Listeners' latest lists (live)", expand=True)
        table.add_column("listener", style="bold")
        table.add_column("just did")
        table.add_column(f"top {self.top}: track — why")
        for user in sorted(self._last):
            rec = self._lists.get(user)
            items = (
                "\n".join(
                    f"{n + 1}. [cyan]{self._name(i.track_id)}[/] — {i.reason} [dim]({i.score:.2f})"
                    for n, i in enumerate(rec.items[: self.top])
                )
                if rec
                else "[dim]waiting …"
            )
            table.add_row(user, self._last[user], items)
        return table

    def played(self, user: str, kind: str, track: str) -> None:
        colour = {"play": "green", "skip": "red", "like": "yellow"}.get(kind, "white")
        self._last[user] = f"[{colour}]{kind}[/] {self._name(track)}"
        self._refresh()

    def listed(self, rec: Recommendation) -> None:
        self._lists[rec.user_id] = rec
        self._refresh()

    def _refresh(self) -> None:
        if self._live is None:
            self._live = Live(self._table(), console=self.console, refresh_per_second=8)
            self._live.start()
        else:
            self._live.update(self._table())

    def summary(self, result: dict[str, Any]) -> None:
        if self._live is not None:
            self._live.stop()
        table = Table(title=f"Latency ({result['tracks']} tracks)")
        table.add_column("from → to")
        for col in ("n", "median", "p95"):
            table.add_column(col, justify="right")
        labels = {
            "upload_to_searchable_burst": "upload → searchable (catalog burst)",
            "upload_to_searchable_single": "upload → searchable (one new track)",
            "event_to_recommendation": "play/skip → new list",
        }
        for key, label in labels.items():
            p = result[key]
            if p.get("n"):
                table.add_row(label, str(p["n"]), f"{p['median_s']:.2f} s", f"{p['p95_s']:.2f} s")
        self.console.print(Group(table))
