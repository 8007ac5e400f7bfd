"""Where a worker's CPU goes: py-spy samples of the worker at saturation, split by stage.

``resonate bench`` attaches py-spy (non-blocking: the worker is not paused) to the worker
during its saturation step and writes two files: the collapsed stacks (``profile.txt``)
and a flame graph (``flame.svg``). :func:`stage_budget` assigns every sample to the stage
of its innermost frame that names one (:data:`STAGE_RULES`), so "rank" is the ranking's
own code and not the JSON it calls; a sample that names no stage is the framework's
(Faust, aiokafka, asyncio). The shares times the step's measured worker CPU per
interaction give the CPU budget per interaction of each stage.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

#: (stage, pattern of a frame "[Class.]function (file:line)"): a sample's innermost frame
#: that matches one names its stage. Order matters only within one frame.
_Q = r"^(?:[\w<>]+\.)*"  # py-spy names methods Class.method (and closures a.<locals>.b)
_FILE = r"\((?:[^()]*/)?"  # the start of a frame's "(path/file.py:line)", any root
STAGE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (stage, re.compile(p))
    for stage, p in (
        ("decode", _Q + r"loads_(value|key) \(.*streams/codec\.py"),
        ("state codec", r"streams/state_codec\.py|" + _Q + r"(get_state|put_state) \("),
        ("encode", _Q + r"(dumps_(value|key) \(.*streams/codec\.py|_message \()"),
        ("vector search", r"milvus_store\.py|/pymilvus/|/grpc/|" + _Q + r"_fill_cache \("),
        ("sequence model", r"user_encoder_client\.py|" + _Q + r"sequence_candidates \("),
        ("rank", _Q + r"(rank|_rank|_rank_kinds) \(.*streams/(rank|refresh)\.py"),
        # The candidates' steps outside streams/candidates.py (the catalog's lists, co-plays
        # and artist tops are read here, not fed); inside it, its file names it (below).
        # The skip evidence is made with the candidates, by rules that live in models/.
        (
            "candidates",
            _Q + r"(_pools|_with_favourites|lists|coplays_of|tracks_by) \("
            r"|(skip_evidence|_unit_rows|fit|learnt_skip_evidence) \(.*models/",
        ),
        ("fold", _Q + r"fold_batch \(|streams/(state|dedupe|fold)\.py|schemas/event_time\.py"),
        ("catalog feed", r"streams/catalog\.py"),
        ("dead letters", r"streams/(deadletter|spool)\.py"),
        (
            "produce",
            r"aiokafka/producer/|faust/transport/producer|"
            + _Q
            + r"(send|publish_message|_send_now|as_future_message) \(.*faust/(topics|channels)\.py",
        ),
        ("metrics", r"/prometheus_client/"),
        # By file, after the names above (which win within a frame): a step's helpers and
        # comprehensions are the step's, whatever they are called after the next refactor.
        ("rank", _FILE + r"(streams/rank|models/fusion_rule)\.py:"),
        ("candidates", _FILE + r"streams/(candidates|fusion)\.py:"),
        # The pipeline's and refresher's own lines: loops over the batch, grouping, metrics
        # calls; what they call is filed under its own stage first.
        ("batch glue", _FILE + r"streams/(pipeline|refresh)\.py:"),
        # The event loops' own wake-ups (the worker's and Faust's consumer thread's): CPU
        # spent in epoll_wait and cross-thread wake-ups, not idle time (py-spy skips that).
        ("event loop", _Q + r"(select|_write_to_self|_read_from_self|call_soon_threadsafe) \("),
    )
)
STAGES: tuple[str, ...] = (*dict.fromkeys(s for s, _ in STAGE_RULES), "framework")


def stage_of(frames: list[str]) -> str:
    """The stage of one sample (frames root first, as py-spy's raw format writes them)."""
    for frame in reversed(frames):
        for stage, pattern in STAGE_RULES:
            if pattern.search(frame):
                return stage
    return "framework"


def stage_shares(collapsed: Iterable[str]) -> tuple[dict[str, float], int]:
    """Share of the samples per stage (every stage of ``STAGES``), and the sample count,
    from py-spy's raw lines ``frame;frame;...;frame <count>``."""
    counts: Counter[str] = Counter()
    for line in collapsed:
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not stack or not n.isdigit():
            continue
        counts[stage_of(stack.split(";"))] += int(n)
    total = sum(counts.values())
    return {s: round(counts[s] / total, 4) if total else 0.0 for s in STAGES}, total


def stage_budget(shares: dict[str, float], cpu_ms_per_event: float) -> dict[str, float]:
    """CPU-ms per interaction of each stage: its share of the worker's measured CPU."""
    return {s: round(share * cpu_ms_per_event, 3) for s, share in shares.items()}


def py_spy() -> str | None:
    """The py-spy executable beside this interpreter, or on PATH."""
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


async def record(pid: int, *, seconds: float, out_dir: Path, rate_hz: int = 100) -> dict[str, str]:
    """Sample ``pid`` for ``seconds`` into ``profile.txt`` and ``flame.svg`` (two samplers at
    once, both non-blocking); returns the paths written, or {} without py-spy."""
    exe = py_spy()
    if exe is None:
        log.warning("py-spy not installed: no stage budget")
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"raw": out_dir / "profile.txt", "flamegraph": out_dir / "flame.svg"}
    procs = [
        await asyncio.create_subprocess_exec(
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            str(rate_hz),
            "--nonblocking",
            "--format",
            fmt,
            "--output",
            str(path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        for fmt, path in files.items()
    ]
    written: dict[str, str] = {}
    for (fmt, path), proc in zip(files.items(), procs, strict=True):
        _, err = await proc.communicate()
        if proc.returncode == 0 and path.exists():
            written[fmt] = str(path)
        else:
            log.warning("py-spy %s failed (%s): %s", fmt, proc.returncode, err.decode()[-300:])
    return written
