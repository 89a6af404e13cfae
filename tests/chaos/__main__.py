"""`make chaos`: a fault campaign against a saga-stack release, checked against the saga
invariants, with recovery figures and a report (JSON, PNG timeline, Markdown summary).

  python -m tests.chaos run --install local-ha.yaml --faults 22 --seed 7
  python -m tests.chaos run --namespace saga --release saga --kinds app-kill,node-stop
  python -m tests.chaos check bench-results/chaos/<run-id>     # judge a saved run again

Ctrl-C (or SIGTERM) ends a run early: the fault under way is healed, the run settles and
is checked as usual. Exit codes: 0 no invariant violated; 1 violations (listed, and in summary.md);
2 bad options; 3 the release or the cluster was not usable.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.chaos import checker, figures, report
from tests.chaos.faults import KINDS, Target
from tests.chaos.history import History
from tests.chaos.runner import STOP, Settings, app_selector, applicable, campaign, log
from tests.chaos.schedule import plan
from tests.e2e.cluster import REPO, CommandFailed, install_values
from tests.e2e.releases import installed_release

RESULTS = REPO / "bench-results" / "chaos"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="fault kinds:\n"
        + "\n".join(
            f"  {k.name:18} {k.description} (held {k.hold_seconds:.0f}s)" for k in KINDS.values()
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a campaign")
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--namespace", help="namespace of an installed release")
    where.add_argument(
        "--install", nargs="+", metavar="PROFILE",
        help="install a release of its own with these values/ profiles layered on local.yaml "
        "(e.g. local-ha.yaml), in a new namespace removed afterwards unless --keep",
    )  # fmt: skip
    run.add_argument("--release", default="saga", help="Helm release name (default saga)")
    run.add_argument("--keep", action="store_true", help="keep the installed release")
    run.add_argument("--seed", type=int, help="schedule and load seed (default: random, printed)")
    run.add_argument("--faults", type=int, default=len(KINDS), help="number of faults")
    run.add_argument("--kinds", default=",".join(KINDS), help="comma-separated fault kinds")
    run.add_argument("--rate", type=float, default=5.0, help="orders per second (default 5)")
    run.add_argument("--client-image", default="", help="image with python3 for the client pod")
    run.add_argument("--out", type=Path, help=f"results folder (default {RESULTS}/<run-id>)")
    check = sub.add_parser("check", help="judge a saved run (its history.jsonl) again")
    check.add_argument("run_dir", type=Path)
    return parser.parse_args(argv)


def judge(history: History, out: Path) -> int:
    violations = checker.check(history)
    per_fault = figures.fault_figures(history)
    paths = report.write_report(history, violations, per_fault, out)
    print(report.format_table(figures.by_kind(per_fault)))
    for violation in violations:
        print(f"VIOLATION {violation}")
    print(f"{len(violations)} invariant violations; report: {paths['md']} {paths['png']}")
    return 1 if violations else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.command == "check":
        history = History.read(args.run_dir / "history.jsonl")
        return judge(history, args.run_dir)

    seed = args.seed if args.seed is not None else random.randrange(1 << 20)
    # Ctrl-C ends the campaign early but cleanly: the fault under way is healed, the run
    # settles and is checked like a finished one.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: STOP.set())
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    try:
        with installed_release(
            install_values(*args.install) if args.install else None,
            namespace=args.namespace, release=args.release, keep=args.keep, prefix="saga-chaos",
        ) as namespace:  # fmt: skip
            target = Target(namespace, args.release, app_selector(args.release), "")
            kinds = applicable(kinds, target)
            schedule = plan(kinds, args.faults, seed)
            log(f"seed {seed}: {len(schedule)} faults over {', '.join(kinds)} in {namespace}")
            settings = Settings(
                namespace=namespace, release=args.release, seed=seed, rate=args.rate,
                client_image=args.client_image,
            )  # fmt: skip
            history = campaign(settings, schedule)
    except ValueError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    except CommandFailed as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 3
    out = args.out or RESULTS / history.run_id
    out.mkdir(parents=True, exist_ok=True)
    history.write(out / "history.jsonl")
    log(f"history: {out / 'history.jsonl'}")
    return judge(history, out)


if __name__ == "__main__":
    sys.exit(main())
