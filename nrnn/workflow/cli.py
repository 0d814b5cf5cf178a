"""The ``nrnn`` command: ``train`` and ``runs``, and the subcommands installed packages add
through the ``nrnn.commands`` entry points (``nrnn.workflow.commands``: ``derive``,
``verify``, ``figures``, ``bench``).

``nrnn train --plugin MODULE`` imports a module that registers a cell, noise form or
objective of your own (``nrnn.cells.register_cell``, ...), so that a config can name it;
modules of the ``nrnn.plugins`` entry points are imported by every command.

Exit codes are those of :mod:`nrnn.exitcodes`: 0 done, 2 usage error, 3 a claim does not
hold (``verify`` only), 4 infrastructure failure (a failed run, a damaged checkpoint or
store, an unreachable cluster, an I/O error), 130 / 143 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from .. import config as config_module
from .. import exitcodes
from ..exitcodes import InfrastructureError
from ..interrupt import Interrupted, as_interrupted, handle_termination
from . import plugins
from .commands import Command
from .commands import commands as installed_commands


def _train(args: argparse.Namespace) -> int:
    from ..files import prepare_directory
    from ..train import (
        CheckpointError,
        TrainingDivergedError,
        check_request,
        finished_epochs,
        run_directory,
        train,
    )

    if args.config:
        run_config = config_module.load_toml(args.config)
    else:
        run_config = config_module.default_config(args.dataset or "digits")
    overrides = list(args.set)
    for flag, key in (
        ("dataset", "data.name"),
        ("epochs", "train.epochs"),
        ("seed", "train.seed"),
        ("objective", "train.objective"),
        ("threads", "train.threads"),
    ):
        value = getattr(args, flag)
        if value is not None and not (flag == "dataset" and not args.config):
            overrides.append(f"{key}={json.dumps(value)}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    for text in overrides:
        config_module.from_dict(config_module.parse_override(text), run_config)
    run_config.validate()  # before the run directory (and its lease) is created
    if args.out is not None:
        run_dir = Path(args.out)
        where = f"--out {run_dir}"
    else:  # the run's place in the store the experiments use, under the same key
        run_dir = run_directory(run_config, args.store)
        where = f"the run directory {run_dir} of --store {args.store}"
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{where} is a file, not a directory")
    prepare_directory(run_dir.parent, f"the folder of {where}:")  # train makes run_dir
    store = None
    if args.out is None:
        from .store import RunStore

        store = RunStore(args.store)
        store.identity()  # a store, as the experiments' driver makes it
    resume = args.resume or args.start_if_missing
    # the same run stored with fewer epochs is continued, as the experiments do
    continues = store is not None and store.shorter_run(run_config) is not None
    try:  # before the lease, which creates the run directory
        check_request(run_dir, resume=resume, start_if_missing=args.start_if_missing or continues)
    except CheckpointError as error:
        print(f"nrnn train: {error}", file=sys.stderr)
        return exitcodes.USAGE
    from .lease import Lease

    lease = Lease(run_dir)
    holder = lease.try_acquire()
    if holder is not None:
        print(
            f"nrnn train: {run_dir} is being trained by {holder.describe()} (its "
            f"{lease.path.name}); wait for it to finish, or choose another --out or --store",
            file=sys.stderr,
        )
        return exitcodes.INFRASTRUCTURE
    try:
        continued = None if store is None else store.continue_from_shorter(run_config)
        if continued is not None:
            print(f"nrnn train: {continued}", file=sys.stderr)
        result = train(
            run_config,
            run_dir,
            resume=resume or continued is not None,
            start_if_missing=args.start_if_missing,
            progress=args.progress,
            guard=lease.check,
        )
    except (CheckpointError, TrainingDivergedError) as error:
        print(f"nrnn train: {error}", file=sys.stderr)
        # Nothing to resume, or a checkpoint --resume would be needed for: the request's
        # fault; a damaged checkpoint or a diverged run: the run's.
        wrong_request = isinstance(error, CheckpointError) and (
            not resume or not (run_dir / "checkpoint.pt").exists()
        )
        return exitcodes.USAGE if wrong_request else exitcodes.INFRASTRUCTURE
    except (KeyboardInterrupt, Interrupted) as error:
        kept = finished_epochs(run_dir)
        where = (
            f"the checkpoint of epoch {kept} is kept in {run_dir}; add --resume to continue"
            if kept
            else "no epoch had finished, nothing was kept"
        )
        raise as_interrupted(error).with_message(f"interrupted: {where}") from None
    finally:
        lease.release()
    final = result.metrics[-1] if result.metrics else {}
    print(json.dumps({"run_dir": str(result.run_dir), **final}, indent=2))
    return 0


def _runs(args: argparse.Namespace) -> int:
    from .inventory import format_runs, prune, scan
    from .store import RunStore

    store = RunStore(args.store)
    if args.action == "list":
        print(format_runs(scan(store), store))
        return 0
    removed = prune(store, partial=args.partial, dry_run=args.dry_run)
    for line in removed:
        print(line)
    print(f"{len(removed)} {'to remove' if args.dry_run else 'removed'} from {store.root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from ..objectives import OBJECTIVES
    from ..train.keys import DEFAULT_STORE
    from .store import CODE_VERSION

    parser = argparse.ArgumentParser(
        prog="nrnn", description="Noisy recurrent neural networks: derive, train, verify."
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"nrnn {__version__} (trained runs: code version {CODE_VERSION})",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a noisy RNN from a config")
    train.add_argument("--config", help="TOML config file (default: the dataset's shipped config)")
    train.add_argument("--dataset", help="dataset name (selects its shipped default config)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--objective", choices=OBJECTIVES.names())
    _plugin_argument(train)
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. noise.additive=0.1",
    )
    where = train.add_mutually_exclusive_group()
    where.add_argument(
        "--store",
        default=str(DEFAULT_STORE),
        help=f"the store of trained runs to train into, at <store>/<dataset>/<key>, where the "
        f"experiments find the run (default {DEFAULT_STORE})",
    )
    where.add_argument("--out", help="a run directory of your own instead of the store")
    train.add_argument(
        "--resume", action="store_true", help="continue from the run's checkpoint (must exist)"
    )
    train.add_argument(
        "--start-if-missing",
        action="store_true",
        help="continue from the run's checkpoint if there is one, else start a fresh run",
    )
    train.add_argument(
        "--threads",
        type=int,
        help="torch threads of the run (train.threads; default: torch's default, all cores)",
    )
    train.add_argument(
        "--no-progress",
        "--quiet",
        dest="progress",
        action="store_false",
        help="no progress bar (--quiet is the old spelling)",
    )
    train.set_defaults(handler=_train)

    runs = commands.add_parser(
        "runs", help="list the stored trained runs, or prune what is of no further use"
    )
    actions = runs.add_subparsers(dest="action", required=True)

    for action, summary in (
        ("list", "every run of the store: state (finished, partial, damaged, ...), labels, size"),
        (
            "prune",
            "remove damaged runs, runs of another code version, temporary files left by "
            "killed processes (never a run in use)",
        ),
    ):
        command = actions.add_parser(action, help=summary, description=summary)
        command.add_argument(
            "--store", default=str(DEFAULT_STORE), help=f"the store (default {DEFAULT_STORE})"
        )
        if action == "prune":
            command.add_argument(
                "--partial", action="store_true", help="also remove unfinished runs"
            )
            command.add_argument(
                "--dry-run", action="store_true", help="say what would be removed; remove nothing"
            )
    runs.set_defaults(handler=_runs)

    # The installed packages' commands parse their own arguments (``nrnn verify --help``).
    for entry in installed_commands():
        command = commands.add_parser(
            entry.name, add_help=False, help=f"{entry.summary} (nrnn {entry.name} --help)"
        )
        command.set_defaults(handler=_installed(entry), passes_extra=True)
    return parser


def _installed(command: Command) -> Callable[[argparse.Namespace], int]:
    return lambda args: command.run(args.extra)


def _plugin_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first: it registers a cell, noise form or objective of your own "
        "that the config names (repeatable)",
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    early = argparse.ArgumentParser(add_help=False)
    _plugin_argument(early)
    try:
        plugins.load("nrnn.plugins")
        plugins.import_modules(early.parse_known_args(argv)[0].plugin)
    except ImportError as error:
        print(f"nrnn: {error}", file=sys.stderr)
        return exitcodes.USAGE
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        with handle_termination():
            return args.handler(args)
    except (KeyboardInterrupt, Interrupted) as error:
        interrupted = as_interrupted(error)
        print(f"nrnn {args.command}: {interrupted.message or 'interrupted'}", file=sys.stderr)
        return interrupted.exit_code
    except InfrastructureError as error:
        print(f"nrnn {args.command}: {error}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:
        # The reader of stdout went away (``nrnn train ... | head``): stop quietly, and keep
        # Python from reporting the broken pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"nrnn {args.command}: {error}", file=sys.stderr)
        return exitcodes.USAGE
    except OSError as error:
        print(f"nrnn {args.command}: {error}", file=sys.stderr)
        return exitcodes.INFRASTRUCTURE
