"""The ``tulu-jax`` command line: one subcommand per module in ``tulu_jax/commands``.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; one that
touches JAX devices sets ``USES_DEVICES = True`` and runs after the process has joined its peers
(``tulu_jax.distributed.start_runtime``: a TPU pod, the ``TULU_*`` settings, or alone).
Errors a user can cause (``TuluError``) are printed without a traceback; ``--debug`` shows one.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import pkgutil
import sys
from types import ModuleType

from tulu_jax import __version__
from tulu_jax.errors import TuluError

import tulu_jax.commands as commands_package


# Storage failures a user fixes outside the program: one line each, never a traceback.
STORAGE_ERRORS = {
    errno.ENOSPC: "free some space on that disk or choose another output_dir",
    errno.EDQUOT: "the disk quota is used up; free some space or choose another output_dir",
    errno.EROFS: "that file system is read-only; choose a writable output_dir",
    errno.EACCES: "no permission to write there; choose another output_dir",
    errno.ENOTDIR: "a path component is a file, not a directory",
}


def discover_commands() -> dict[str, ModuleType]:
    """Every command module under ``tulu_jax.commands``, keyed by its NAME."""
    found = {}
    for info in pkgutil.iter_modules(commands_package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands_package.__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            found[module.NAME] = module
    return dict(sorted(found.items()))


def build_parser(commands: dict[str, ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tulu-jax",
        description="The Tülu 3 post-training recipe (SFT, DPO, RLVR) for Llama 3.1 in JAX.",
    )
    parser.add_argument("--version", action="version", version=f"tulu-jax {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in commands.items():
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run, _uses_devices=getattr(module, "USES_DEVICES", False))
    return parser


def configure_logging() -> None:
    """Progress messages of the stages (data tables, resumption, drops) on stderr; library chatter hidden."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    for noisy in ("absl", "orbax", "jax", "etils", "tensorflow", "grain", "httpx", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    commands = discover_commands()
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        if args._uses_devices:
            from tulu_jax.distributed import finish_run, start_runtime

            start_runtime()
            code = int(args._run(args) or 0)
            finish_run()
            return code
        return int(args._run(args) or 0)
    except TuluError as error:
        if args.debug:
            raise
        return _fail(f"error: {error}", 1)
    except OSError as error:
        if args.debug or error.errno not in STORAGE_ERRORS:
            _tell_the_other_processes(error)
            raise
        where = f"{error.filename}: " if error.filename else ""
        return _fail(f"error: {where}{error.strerror}; {STORAGE_ERRORS[error.errno]}. Nothing half-written is "
                     "kept: exports appear whole, checkpoints commit whole; rerun to resume", 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as error:
        if _lost_a_peer(error):
            return _fail(f"error: lost contact with another process of this run ({_first_line(error)}); it stopped "
                         "or its host is unreachable. Rerun the same command on every host: it resumes from the "
                         "newest checkpoint", 1)
        _tell_the_other_processes(error)
        raise


def _fail(line: str, code: int) -> int:
    """Print ``line``; in a multi-process run also tell the other processes and end this one (no native
    shutdown wait): every process then prints one line and exits within seconds."""
    from tulu_jax.distributed.watch import current_watch

    watch = current_watch()
    if watch is None:
        print(line, file=sys.stderr)
        return code
    watch.report(line, code)
    return code


# What a device collective raises when the process on the other end has gone (gloo on CPU hosts).
PEER_LOST_SIGNS = ("Connection reset by peer", "Connection closed by peer", "Gloo ", "UNAVAILABLE")


def _lost_a_peer(error: BaseException) -> bool:
    """A runtime error of a multi-process run whose cause is a peer that went away; the peer watch is given a
    few polls to say which one first (it ends the process itself when it does)."""
    from tulu_jax.distributed.watch import current_watch

    watch = current_watch()
    if watch is None or type(error).__name__ not in ("JaxRuntimeError", "XlaRuntimeError"):
        return False
    if not any(sign in str(error) for sign in PEER_LOST_SIGNS):
        return False
    watch.give_the_watch_time()
    return True


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _tell_the_other_processes(error: BaseException) -> None:
    """An unexpected error (a bug, shown with its traceback) on one process: the others stop in one line."""
    from tulu_jax.distributed.watch import current_watch

    watch = current_watch()
    if watch is not None:
        watch.notify_others(f"{type(error).__name__}: {_first_line(error)}")


if __name__ == "__main__":
    sys.exit(main())
