"""The figures of `python -m bench.cores`, what limited each row, and the printed report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench import report
from bench.cores_generators import RPCS, Rpc
from bench.rows import disturbance
from bench.stats import Row

GOAL = 1.7  # workers=2 over workers=1, where the load generator is not the limit (issue 12, point 6)
SATURATED = 0.9  # this share of the cores (or of a generator's own cores) counts as all of them


@dataclass(frozen=True)
class BrokerCalls:
    """What the broker's own counters saw during a row (its warm-up included): the calls with status OK per
    worker, and the calls with any other status, by status."""

    ok_per_worker: tuple[int, ...]
    not_ok: dict[str, int]

    @property
    def ok(self) -> int:
        return sum(self.ok_per_worker)

    def spread(self) -> str:
        """Each worker's share of the OK calls in percent: how SO_REUSEPORT spread the connections."""
        if not self.ok or len(self.ok_per_worker) < 2:
            return "-"
        return "/".join(f"{100 * count / self.ok:.0f}" for count in self.ok_per_worker)

    def as_json(self) -> dict[str, object]:
        return {"ok_per_worker": list(self.ok_per_worker), "not_ok": self.not_ok}


def broker_calls(before: Sequence[dict[str, float]], after: Sequence[dict[str, float]]) -> BrokerCalls:
    """The difference of two readings of the workers' call counts by status (`Broker.calls`)."""
    ok = tuple(int(a.get("OK", 0.0) - b.get("OK", 0.0)) for b, a in zip(before, after, strict=True))
    not_ok: dict[str, int] = {}
    for b, a in zip(before, after, strict=True):
        for status, count in a.items():
            if status != "OK" and count > b.get(status, 0.0):
                not_ok[status] = not_ok.get(status, 0) + int(count - b.get(status, 0.0))
    return BrokerCalls(ok, not_ok)


@dataclass
class Measured:
    """One row: an RPC driven by one generator against the broker with `workers` workers, on a machine of
    `machine_cores` cores."""

    rpc: Rpc
    generator: str
    workers: int
    round: int  # 1, 2, ... in the run
    row: Row
    broker_calls: BrokerCalls
    generator_cores: int  # the most cores the generator can use
    machine_cores: int

    def cores(self, name: str) -> float:
        return self.row.cores.get(name) or 0.0

    def ours(self) -> float:
        """The cores the broker and the generator kept busy together."""
        return self.cores("broker") + self.cores("generator")

    def per_broker_core(self) -> float | None:
        """calls/s per core the broker kept busy: the same at 1 and 2 workers if a worker adds no cost."""
        broker = self.cores("broker")
        return self.row.calls_per_s / broker if broker > 0 else None

    def machine_bound(self) -> bool:
        """The broker's and the generator's CPU together reached the machine's cores."""
        return self.ours() >= SATURATED * self.machine_cores

    def crowded(self) -> bool:
        """The machine's cores were used up only with what others ran beside the bench."""
        return not self.machine_bound() and self.cores("machine") >= SATURATED * self.machine_cores

    def generator_bound(self) -> bool:
        return self.cores("generator") >= SATURATED * self.generator_cores

    def limit(self) -> str:
        found = [
            name
            for name, hit in (
                ("machine", self.machine_bound()),
                ("machine+others", self.crowded()),
                ("generator", self.generator_bound()),
            )
            if hit
        ]
        return ", ".join(found) or "-"

    def as_json(self) -> dict[str, object]:
        return {
            "rpc": self.rpc.key,
            "generator": self.generator,
            "workers": self.workers,
            "round": self.round,
            **self.row.as_json(),
            "broker_calls": self.broker_calls.as_json(),
            "generator_cores_max": self.generator_cores,
            "calls_per_broker_core": self.per_broker_core(),
            "machine_bound": self.machine_bound(),
            "machine_bound_with_others": self.crowded(),
            "generator_bound": self.generator_bound(),
        }


def quietest_pairs(rounds: Sequence[Sequence[Measured]]) -> list[Measured]:
    """For each RPC and generator, its two rows (workers=1 and 2) from the round in which others' processes
    disturbed that pair least (on a tie, the earlier round): the ratio compares two rows of one round, so a
    pair may come from another round than the next pair on a machine that others share."""
    shown: list[Measured] = []
    for rpc, generator in dict.fromkeys((m.rpc.key, m.generator) for m in rounds[0]):
        pairs = [pair for run in rounds if (pair := _pair(run, rpc, generator)) is not None]
        shown += min(pairs, key=lambda pair: disturbance([m.row for m in pair]))
    return shown


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _whole(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(run: Sequence[Measured]) -> str:
    header = [
        "row",
        "round",
        "workers",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "broker not OK",
        "broker cpu",
        "calls/core",
        "gen cpu",
        "broker+gen",
        "machine cpu",
        "irq cpu",
        "other cpu",
        "STS reqs",
        "split %",
        "limit",
    ]
    lines = []
    for measured in run:
        row = measured.row
        lines.append(
            [
                row.label,
                str(measured.round),
                str(measured.workers),
                f"{row.calls_per_s:.0f}",
                _figure(row.p50_ms),
                _figure(row.p99_ms),
                str(row.errors),
                str(sum(measured.broker_calls.not_ok.values())),
                _figure(row.cores.get("broker")),
                _whole(measured.per_broker_core()),
                _figure(row.cores.get("generator")),
                _figure(measured.ours()),
                _figure(row.cores.get("machine")),
                _figure(row.cores.get("irq")),
                _figure(row.cores.get("other")),
                "-" if row.sts_token_requests is None else str(row.sts_token_requests),
                measured.broker_calls.spread(),
                measured.limit(),
            ]
        )
    return report.plain_table(header, lines)


def _pair(run: Sequence[Measured], rpc: str, generator: str) -> tuple[Measured, Measured] | None:
    found = {m.workers: m for m in run if m.rpc.key == rpc and m.generator == generator}
    return (found[1], found[2]) if 1 in found and 2 in found else None


def scaling(run: Sequence[Measured], rpc: str, generator: str) -> float | None:
    """calls/s with 2 workers over calls/s with 1, for one RPC and generator in one round."""
    pair = _pair(run, rpc, generator)
    if pair is None or pair[0].row.calls_per_s <= 0:
        return None
    return pair[1].row.calls_per_s / pair[0].row.calls_per_s


def pooled_scaling(rounds: Sequence[Sequence[Measured]], rpc: str, generator: str) -> float | None:
    """As `scaling`, with each side's calls/s summed over the rounds: one disturbed row weighs less."""
    pairs = [pair for run in rounds if (pair := _pair(run, rpc, generator)) is not None]
    one = sum(pair[0].row.calls_per_s for pair in pairs)
    return sum(pair[1].row.calls_per_s for pair in pairs) / one if one > 0 else None


def verdict(pair: tuple[Measured, Measured]) -> str:
    """What limited the pair's row with 2 workers, in words."""
    two = pair[1]
    cores = two.machine_cores
    if two.machine_bound():
        return (
            f"at workers=2 broker {two.cores('broker'):.2f} + {two.generator} {two.cores('generator'):.2f} = "
            f"{two.ours():.2f} of {cores} cores: the machine, not the broker, is the limit"
        )
    if two.crowded():
        return (
            f"at workers=2 broker {two.cores('broker'):.2f} + {two.generator} {two.cores('generator'):.2f}, "
            f"the machine {two.cores('machine'):.2f} of {cores} cores with other processes "
            f"({two.cores('other'):.2f}): the machine, shared, is the limit"
        )
    bound = [m for m in pair if m.generator_bound()]
    if bound:
        return (
            f"{two.generator} used {bound[0].cores('generator'):.2f} of its {two.generator_cores} core(s) at "
            f"workers={bound[0].workers}: the load generator is the limit"
        )
    return (
        f"at workers=2 the machine was busy {two.cores('machine'):.2f} of {cores} cores and {two.generator} "
        f"{two.cores('generator'):.2f} of its {two.generator_cores}: neither used up, the broker is the limit"
    )


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def scaling_lines(rounds: Sequence[Sequence[Measured]], shown: Sequence[Measured]) -> list[str]:
    lines = [f"workers=2 / workers=1 (goal >= {GOAL:.1f}x where the load generator is not the limit):"]
    lines.append("  (rows as shown above; pooled: each side's calls/s summed over all rounds)")
    generators = list(dict.fromkeys(m.generator for m in shown))
    for rpc in RPCS:
        for generator in generators:
            pair = _pair(shown, rpc.key, generator)
            value = scaling(shown, rpc.key, generator)
            if pair is None or value is None:
                continue
            pooled = pooled_scaling(rounds, rpc.key, generator)
            per_round = ", ".join(_ratio(scaling(run, rpc.key, generator)) for run in rounds)
            met = "meets the goal" if value >= GOAL else "below the goal"
            lines.append(
                f"  {rpc.label}, {generator}: {_ratio(value)} ({met}); pooled over {len(rounds)} round(s) "
                f"{_ratio(pooled)}; by round {per_round}"
            )
            lines.append(f"    {verdict(pair)}")
            one, two = (_whole(m.per_broker_core()) for m in pair)
            lines.append(f"    calls/s per broker core: {one} at workers=1, {two} at workers=2")
    return lines


def report_lines(rounds: Sequence[Sequence[Measured]]) -> list[str]:
    shown = quietest_pairs(rounds)
    lines = [
        f"each RPC and generator from the round (of {len(rounds)}) in which other processes disturbed its "
        "pair of rows least:",
        table(shown),
        "",
        *scaling_lines(rounds, shown),
    ]
    one_worker = [
        m.row.calls_per_s
        for run in rounds
        for m in run
        if m.generator == "h2load" and m.workers == 1 and m.rpc.key == "ceiling"
    ]
    if one_worker:
        figures = ", ".join(f"{value:.0f}" for value in one_worker)
        lines.append(
            f"h2load, GetBrokerInfo on 1 worker: {figures} calls/s by round (the issue: about 11.7k)"
        )
    if len(rounds) > 1:
        others = ", ".join(f"{disturbance([m.row for m in run]):.2f}" for run in rounds)
        lines.append(f"other cpu up to, by round: {others}")
    for run in rounds:
        for measured in run:
            row = measured.row
            if row.errors or measured.broker_calls.not_ok:
                lines.append(
                    f"{row.label}, workers={measured.workers}: {row.errors} errors "
                    f"(first: {row.first_error}); the broker's not-OK calls: {measured.broker_calls.not_ok}"
                )
    return lines
