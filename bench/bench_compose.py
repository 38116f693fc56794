"""`compose up -d` of 10 independent services and of a chain of 5 dependent ones, and
`compose down`, against the same number of `run -d` (and `rm -f`) calls made one after
another in the same run. Independent services start at once, so `up -d` of 10 must take
less than 10 sequential runs (ratio < 1)."""

from __future__ import annotations

from pathlib import Path

from _common import Bench, bench_env, report, timed

INDEPENDENT = 10
CHAIN = 5


def compose_file(directory: Path, count: int, chain: bool) -> Path:
    services = []
    for i in range(count):
        dep = f"\n    depends_on: [s{i - 1}]" if chain and i else ""
        services.append(f"  s{i}:\n    image: busybox:latest\n    command: [sleep, '1000']{dep}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "compose.yaml"
    path.write_text("services:\n" + "\n".join(services) + "\n")
    return path


def sequential_runs(b: Bench, count: int, prefix: str) -> float:
    def run() -> None:
        for i in range(count):
            b.dy("run", "-d", "--name", f"{prefix}{i}", "busybox:latest", "sleep", "1000")

    return timed(run)


def remove_runs(b: Bench, count: int, prefix: str) -> float:
    def rm() -> None:
        for i in range(count):
            b.dy("rm", "-f", f"{prefix}{i}")

    return timed(rm)


def main() -> None:
    with bench_env() as b:
        flat = compose_file(b.base / "flat", INDEPENDENT, chain=False)
        chain = compose_file(b.base / "chain", CHAIN, chain=True)
        # warm-up: the first container start of a store pays for one-time set-up
        b.dy("compose", "-f", str(flat), "up", "-d", "s0")
        b.dy("compose", "-f", str(flat), "down", "-t", "0")
        b.dy("run", "-d", "--name", "warm", "busybox:latest", "true")
        b.dy("rm", "-f", "warm")

        runs10 = sequential_runs(b, INDEPENDENT, "seq")
        rm10 = remove_runs(b, INDEPENDENT, "seq")
        up10 = timed(lambda: b.dy("compose", "-f", str(flat), "up", "-d"))
        down10 = timed(lambda: b.dy("compose", "-f", str(flat), "down", "-t", "0"))

        runs5 = sequential_runs(b, CHAIN, "chain")
        remove_runs(b, CHAIN, "chain")
        up5 = timed(lambda: b.dy("compose", "-f", str(chain), "up", "-d"))
        b.dy("compose", "-f", str(chain), "down", "-t", "0")

        report(f"compose up -d, {INDEPENDENT} independent services", up10, runs10,
               f"{INDEPENDENT} sequential run -d", 1.0)  # fmt: skip
        report(f"compose up -d, chain of {CHAIN}", up5, runs5, f"{CHAIN} sequential run -d", 1.5)
        report(f"compose down -t 0, {INDEPENDENT} services", down10, rm10,
               f"{INDEPENDENT} sequential rm -f", 1.0)  # fmt: skip
        report(f"compose down -t 0, {INDEPENDENT} services", down10, runs10,
               f"{INDEPENDENT} sequential run -d", 1.0)  # fmt: skip
        print(
            f"per container: run -d {runs10 / INDEPENDENT:.3f}s, up -d of {INDEPENDENT} "
            f"{up10 / INDEPENDENT:.3f}s, up -d of the chain {up5 / CHAIN:.3f}s"
        )


if __name__ == "__main__":
    main()
