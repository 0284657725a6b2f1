"""The metrics directory that Granian's workers share (``PROMETHEUS_MULTIPROC_DIR``).

``bfx serve`` creates a private directory, names it to its workers in the environment
and removes it when it stops. Each worker writes its cumulative counters there, in
``prometheus_client``'s multiprocess file format (``counter_<pid>.db``,
``histogram_<pid>.db``: memory-mapped, one writer each), and whichever worker answers a
scrape sums every file with ``prometheus_client.multiprocess.MultiProcessCollector``.

Beside them each worker keeps ``stats_<pid>.json``, the counters of the JSON metrics
(:class:`~bfx.asgi.metrics.WorkerState`), replaced whole once a second.

A dead worker's files (a crash, a kill, a respawn) are folded into ``*_archive.*``
files and removed — so its requests still count, since counters must never go down,
and the directory does not grow with every respawn — and its live gauges are dropped
with ``mark_process_dead``. Folding takes an exclusive ``flock`` on the directory's
lock file and reading a shared one, so a scrape never sees a worker counted twice or
not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psutil
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

__all__ = ["ENV", "PREFIX", "Directory", "Sample", "remove_stale"]

#: The variable naming the directory (prometheus_client's own name for it).
ENV = "PROMETHEUS_MULTIPROC_DIR"
_TYPES = ("counter", "histogram")
_LOCK = ".lock"

#: One cumulative value of this worker: (type, family name, sample name, label
#: names, label values, help text, value).
Sample = tuple[str, str, str, tuple[str, ...], tuple[str, ...], str, float]


class Directory:
    """One worker's view of the shared directory: it writes its own files and reads
    (and tidies) everyone's."""

    def __init__(self, path: str, fold_stats: Callable[[list[bytes]], bytes] | None = None) -> None:
        if not os.path.isdir(path):
            raise ValueError(f"{ENV}={path!r} is not a directory")
        self.path = path
        #: Adds up dead workers' stats files (and the archive's) into one.
        self._fold_stats = fold_stats
        self._pid = 0
        self._files: dict[str, MmapedDict] = {}
        self._keys: dict[tuple[Any, ...], str] = {}
        self._written: dict[str, float] = {}

    # -- writing (this worker) -----------------------------------------------------------

    def write(self, samples: Iterable[Sample]) -> int:
        """Store this worker's cumulative values; only the changed ones are written.
        Returns how many were."""
        pid = os.getpid()
        if pid != self._pid:  # first write, or a fork: files of our own
            self.close()
            self._pid = pid
            self._written.clear()
        n = 0
        for typ, family, name, labelnames, labelvalues, help_text, value in samples:
            cache = (family, name, labelvalues)
            key = self._keys.get(cache)
            if key is None:
                key = self._keys[cache] = mmap_key(
                    family, name, list(labelnames), list(labelvalues), help_text
                )
            if self._written.get(key) == value:
                continue
            f = self._files.get(typ)
            if f is None:
                f = self._files[typ] = _created(os.path.join(self.path, f"{typ}_{pid}.db"))
            f.write_value(key, value, 0.0)
            self._written[key] = value
            n += 1
        return n

    def write_stats(self, data: bytes) -> None:
        """Replace this worker's stats file (the JSON metrics' counters) at once: a
        reader sees the old one or the new one, never half."""
        pid = os.getpid()
        tmp = os.path.join(self.path, f".stats_{pid}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(self.path, f"stats_{pid}.json"))

    def read_stats(self) -> dict[str, bytes]:
        """Every stats file by pid (``archive`` for the dead workers'), under the
        shared lock."""
        out: dict[str, bytes] = {}
        with self._locked(fcntl.LOCK_SH):
            for name in glob.glob(os.path.join(self.path, "stats_*.json")):
                with contextlib.suppress(FileNotFoundError), open(name, "rb") as f:
                    out[os.path.basename(name)[6:-5]] = f.read()
        return out

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    # -- reading (any worker) ------------------------------------------------------------

    def collect(self) -> list[Metric]:
        """Every worker's values summed (histograms accumulated), dead ones included."""
        self.fold_dead()
        with self._locked(fcntl.LOCK_SH):
            files = glob.glob(os.path.join(self.path, "*.db"))
            return list(MultiProcessCollector.merge(files, accumulate=True))

    def worker_pids(self) -> list[int]:
        """The pids of workers that have written here and are alive."""
        return sorted(pid for pid in self._pids() if _alive(pid))

    def fold_dead(self) -> list[int]:
        """Fold the files of workers that are no longer running into the archive and
        remove them. Returns their pids."""
        dead = [pid for pid in self._pids() if not _alive(pid)]
        if not dead:
            return []
        with self._locked(fcntl.LOCK_EX):
            for typ in _TYPES:
                files = [os.path.join(self.path, f"{typ}_{pid}.db") for pid in dead]
                files = [f for f in files if os.path.exists(f)]  # another worker folded them
                if not files:
                    continue
                archive = os.path.join(self.path, f"{typ}_archive.db")
                sources = [archive, *files] if os.path.exists(archive) else files
                merged = MultiProcessCollector.merge(sources, accumulate=False)
                # Written beside the archive and renamed over it: a crash mid-way leaves
                # the old archive and the dead files, never half of both.
                fresh = archive + ".new"
                with contextlib.suppress(FileNotFoundError):
                    os.remove(fresh)
                out = MmapedDict(fresh)
                try:
                    for metric in merged:
                        for s in metric.samples:
                            names = tuple(s.labels)
                            key = mmap_key(
                                metric.name,
                                s.name,
                                list(names),
                                [s.labels[n] for n in names],
                                metric.documentation,
                            )
                            out.write_value(key, s.value, 0.0)
                finally:
                    out.close()
                os.replace(fresh, archive)
                for f in files:
                    os.remove(f)
            self._fold_dead_stats(dead)
            for pid in dead:
                mark_process_dead(pid, self.path)
        return dead

    def _fold_dead_stats(self, dead: list[int]) -> None:
        files = [os.path.join(self.path, f"stats_{pid}.json") for pid in dead]
        files = [f for f in files if os.path.exists(f)]
        if not files or self._fold_stats is None:
            return
        archive = os.path.join(self.path, "stats_archive.json")
        parts = []
        for name in ([archive] if os.path.exists(archive) else []) + files:
            with open(name, "rb") as f:
                parts.append(f.read())
        tmp = archive + ".new"
        with open(tmp, "wb") as f:
            f.write(self._fold_stats(parts))
        os.replace(tmp, archive)
        for name in files:
            os.remove(name)

    def _pids(self) -> set[int]:
        pids = set()
        for name in os.listdir(self.path):
            stem, dot, ext = name.rpartition(".")
            if ext in ("db", "json") and dot and not name.startswith("."):
                tail = stem.rpartition("_")[2]
                if tail.isdigit():
                    pids.add(int(tail))
        return pids

    @contextlib.contextmanager
    def _locked(self, how: int) -> Iterator[None]:
        fd = os.open(os.path.join(self.path, _LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            os.close(fd)  # closing releases the lock


#: How ``bfx serve`` names its directory: the prefix, then its pid and a dash.
PREFIX = "bfx-metrics-"


def remove_stale(parent: str) -> list[str]:
    """Remove the directories under ``parent`` that a ``bfx serve`` no longer running
    left behind (killed with SIGKILL, its clean-up never ran). Returns their names."""
    removed = []
    for name in os.listdir(parent):
        pid = name[len(PREFIX) :].partition("-")[0]
        if name.startswith(PREFIX) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            removed.append(name)
    return removed


def _created(path: str) -> MmapedDict:
    """The file at ``path``, made whole before it appears: ``MmapedDict`` creates an
    empty file and then sizes it, and a scrape that globbed it in between failed to
    read it (a 500). Made under a hidden name (no glob sees it) and renamed."""
    if not os.path.exists(path):
        head, name = os.path.split(path)
        tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
        MmapedDict(tmp).close()
        os.replace(tmp, path)
    return MmapedDict(path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
