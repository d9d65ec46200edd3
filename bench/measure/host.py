"""What the host did while a case was timed: CPU load from /proc/stat, the process's memory and page faults, RAPL energy."""

from __future__ import annotations

import os
import re
import statistics
from pathlib import Path

from bench.format.names import OUTSIDE_SHARE

__all__ = ["MIN_TICKS", "OUTSIDE_SHARE", "Host", "own_ticks", "spread"]


# /proc/stat counts CPU time in ticks (10 ms): a share is told only over at least 50 ticks of
# all CPUs together, so one tick's rounding is under 2%, well inside the 10% above.
MIN_TICKS = 50


# packages only: intel-rapl:N:M are parts of package N
_RAPL_PACKAGE = re.compile("intel-rapl:\\d+")


def own_ticks(proc: Path) -> int:
    """This process's CPU ticks (utime, stime: every thread), its reaped children's (cutime, cstime) and its live
    children's: the tuned loader's worker processes are the run's own work, not the machine's other
    work."""
    me = (proc / "self" / "stat").read_text().rsplit(")", 1)[1].split()
    own = sum(int(x) for x in me[11:15])  # fields 14-17
    try:
        tasks = list((proc / "self" / "task").iterdir())
    except OSError:  # no task folder to read (not Linux's /proc): this process alone
        tasks = []
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:  # (a thread that ended, or a kernel without CONFIG_PROC_CHILDREN)
            continue
        for pid in children:
            try:
                stat = (proc / pid / "stat").read_text().rsplit(")", 1)[1].split()
            # it ended between the two reads: its time is in cutime once it is reaped
            except OSError:
                continue
            own += int(stat[11]) + int(stat[12])
    return own


def spread(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"min": min(values), "mean": statistics.fmean(values), "max": max(values)}


class _Rapl:
    """The CPU packages' energy from Linux RAPL (powercap), accumulated at every sample so wraps are counted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.reason: str | None = None
        self.domains: list[tuple[str, Path, int]] = []  # (name, energy_uj file, counter range)
        self.last: list[int] = []
        self.total_uj = 0
        self.error: str | None = None

    def begin(self) -> None:
        try:
            found = sorted(p for p in self.root.iterdir() if _RAPL_PACKAGE.fullmatch(p.name))
        except OSError as exc:
            self.reason = f"no RAPL here: {self.root} cannot be read ({exc.strerror or exc}); VMs usually have none"
            return
        if not found:
            self.reason = f"no RAPL package domain (intel-rapl:N) under {self.root}"
            return
        try:
            for folder in found:
                name = (
                    (folder / "name").read_text().strip()
                    if (folder / "name").exists()
                    else folder.name
                )
                span = int((folder / "max_energy_range_uj").read_text())
                self.domains.append((name, folder / "energy_uj", span))
            self.last = [int(path.read_text()) for _name, path, _span in self.domains]
        except PermissionError as exc:
            self.domains = []
            # Linux 5.10 made energy_uj readable by root only (CVE-2020-8694).
            self.reason = (
                f"RAPL is not readable by this user (root only since Linux 5.10): {exc.filename}"
            )
        except (OSError, ValueError) as exc:
            self.domains = []
            self.reason = f"RAPL could not be read: {exc}"

    def sample(self) -> None:
        if not self.domains or self.error is not None:
            return
        try:
            now = [int(path.read_text()) for _name, path, _span in self.domains]
        except (OSError, ValueError) as exc:
            self.error = f"RAPL read failed during the case: {exc}"
            return
        for (_name, _path, span), before, after in zip(self.domains, self.last, now, strict=True):
            # The counter wraps to 0 after max_energy_range_uj; read often enough, it wraps at most
            # once between reads.
            self.total_uj += after - before if after >= before else after + span - before
        self.last = now

    def record(self, span_s: float, rounds: int) -> dict:
        if not self.domains:
            return {"available": False, "reason": self.reason}
        if self.error is not None:
            return {"available": False, "reason": self.error}
        energy = self.total_uj / 1e6
        return {
            "available": True,
            "source": "rapl",
            # packages: the whole socket, every process
            "domains": [name for name, _path, _span in self.domains],
            "energy_j": energy,
            "energy_per_round_j": energy / rounds if rounds else None,
            "mean_power_w": energy / span_s if span_s > 0 else None,
        }


class Host:
    """Machine-wide and own CPU time from /proc, the CPU packages' energy, and this process's peak memory."""

    def __init__(self, proc: Path, powercap: Path) -> None:
        self.proc = proc
        self.rapl = _Rapl(powercap)
        self.stat0: list[int] | None = None
        self.own0: int | None = None
        self.faults0: int | None = None
        self.cpus: int | None = None
        self.hwm_reset = False
        self.rss_pages: list[int] = []
        self.error: str | None = None

    def _machine(self) -> tuple[list[int], int]:
        lines = (self.proc / "stat").read_text().splitlines()
        # user nice system idle iowait irq softirq steal (guest time is already inside user).
        fields = [int(x) for x in lines[0].split()[1:9]]
        return fields, sum(1 for line in lines if re.match(r"cpu\d+ ", line))

    def _own(self) -> tuple[int, int]:
        # The CPU ticks of this process and its children (own_ticks), and its minor page faults
        # (field 10): each a first touch of a page the process had not mapped, as when the C library
        # hands back a large freed block and the next one of its size is fresh.
        fields = (self.proc / "self" / "stat").read_text().rsplit(")", 1)[1].split()
        return own_ticks(self.proc), int(fields[7])

    def begin(self) -> None:
        try:
            self.stat0, self.cpus = self._machine()
            self.own0, self.faults0 = self._own()
        except (OSError, ValueError, IndexError) as exc:
            self.error = f"/proc could not be read: {exc}"
        try:
            # "5" resets the kernel's peak resident size (VmHWM) to the current one (Linux 4.0+):
            # the exact peak of this case, spikes between samples included.
            (self.proc / "self" / "clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.rapl.begin()
        self.sample()

    def sample(self) -> None:
        self.rapl.sample()
        if not self.hwm_reset:
            try:
                self.rss_pages.append(int((self.proc / "self" / "statm").read_text().split()[1]))
            except (OSError, ValueError, IndexError):
                pass

    def _peak_rss(self) -> tuple[int | None, str]:
        if self.hwm_reset:
            try:
                for line in (self.proc / "self" / "status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024, "VmHWM after clear_refs"
            except (OSError, ValueError, IndexError):
                pass
        if self.rss_pages:
            return max(self.rss_pages) * os.sysconf("SC_PAGE_SIZE"), "largest sampled RSS (statm)"
        return None, "not readable"

    def record(self, span_s: float, rounds: int) -> dict:
        peak, method = self._peak_rss()
        out: dict = {"peak_rss_bytes": peak, "peak_rss_method": method}
        try:
            if (
                self.error is not None
                or self.stat0 is None
                or self.own0 is None
                or self.faults0 is None
            ):
                raise ValueError(self.error or "no reading at the start")
            stat1, _cpus = self._machine()
            own, faults = self._own()
            own -= self.own0
        except (OSError, ValueError, IndexError) as exc:
            out["cpu"] = {"available": False, "reason": str(exc)}
        else:
            out["minor_faults_per_round"] = (faults - self.faults0) / rounds if rounds else None
            delta = [b - a for a, b in zip(self.stat0, stat1, strict=True)]
            total = sum(delta)
            # less idle and iowait; steal counts: another guest had our CPU
            busy = total - delta[3] - delta[4]
            if total >= MIN_TICKS:
                outside = max(busy - own, 0) / total
                out["cpu"] = {
                    "available": True,
                    "cpus": self.cpus,
                    "machine_busy_share": busy / total,  # of all the machine's CPUs over the span
                    "process_share": min(own / total, 1.0),  # this process (all its threads)
                    "outside_share": outside,  # everything else: other processes, the hypervisor's steal
                    "busy": outside > OUTSIDE_SHARE,
                    "busy_above": OUTSIDE_SHARE,  # the outside share that flags a case
                }
            else:
                out["cpu"] = {
                    "available": False,
                    "reason": f"too short to tell: {total} ticks of /proc/stat over all CPUs, under {MIN_TICKS}",
                }
        out["energy"] = self.rapl.record(span_s, rounds)
        return out
