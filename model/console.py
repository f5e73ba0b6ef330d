"""What every console script shares: quiet TensorFlow, `--version`, `--debug`, and one exit code per outcome.

Exit status of every console script (`retrieval-train`, `retrieval-prepare`, `retrieval-serve`, `retrieval-query`,
`retrieval-demo`):
0 success, 1 a runtime error (a bad input file, a missing column, a server that answered with an error),
2 a usage or configuration error (a bad flag, choice or config value). Both errors end in one line on stderr
naming the problem; `--debug` adds the traceback.

Imports nothing heavy, so that `--help` and `--version` answer at once: TensorFlow is imported only by the work.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import re
import sys
import tempfile
import traceback
import typing
from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_STATUS_HELP = (
    "Exit status: 0 on success, 1 for a runtime error (bad input file or column, server error), "
    "2 for a usage or configuration error. Errors print one line; --debug adds the traceback."
)

# Set before TensorFlow loads unless the user set them: level 2 hides TensorFlow's C++ start-up lines
# (oneDNN, CUDA stubs, CPU features) and keeps its errors.
QUIET_TENSORFLOW_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
# Python loggers whose INFO lines are noise to a user: absl (TensorFlow's "Sharding callback duration" every
# epoch), the FAISS loader (every CPU variant it tries) and TensorFlow's Python logger ("Assets written to").
NOISY_LOGGERS = ("absl", "faiss.loader", "tensorflow")


class UsageError(ValueError):
    """A flag or configuration value is wrong; the command exits with status 2."""


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (naming the flag, with the valid values) and exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ start-up lines and absl's info lines; call before TensorFlow is imported."""
    for key, value in QUIET_TENSORFLOW_ENV.items():
        os.environ.setdefault(key, value)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


# TensorFlow's native libraries log through absl before absl is initialised, to stderr and whatever
# TF_CPP_MIN_LOG_LEVEL says (TensorFlow 2.21: oneDNN, CUDA stubs). These lines are dropped while TensorFlow is
# imported by `import_tensorflow_quietly`; every other line written meanwhile is passed on.
_ABSL_PREAMBLE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called|I\d{4} )")


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its native start-up INFO lines dropped (unless TF_CPP_MIN_LOG_LEVEL is set to 0).

    Works on file descriptor 2, since the lines come from C++; a failed import replays everything it wrote.
    """
    if "tensorflow" in sys.modules:
        return
    quiet_tensorflow()
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        importlib.import_module("tensorflow")
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            importlib.import_module("tensorflow")
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = (
                text.splitlines(keepends=True)
                if failed
                else [line for line in text.splitlines(keepends=True) if not _ABSL_PREAMBLE.match(line)]
            )
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def package_version() -> str:
    """The installed distribution's version (the same for every console script)."""
    try:
        return importlib.metadata.version("retrieval-service")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def add_standard_flags(parser: argparse.ArgumentParser) -> None:
    """`--version` and `--debug`, with the same words in every console script."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument(
        "--debug", action="store_true", default=False, help="show the traceback of an error instead of one line"
    )


def run_command(prog: str, body: Callable[[], int], *, debug: bool) -> int:
    """Runs a command's work, turning user errors into one line on stderr and an exit status.

    `UsageError` exits 2; `ValueError` (including the data loaders' `DataError`) and `OSError` (a missing or
    unreadable file) exit 1. Anything else is a bug and keeps its traceback. With `debug`, the traceback of a
    user error is printed before its one line.
    """
    try:
        return body()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {describe(error)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILURE


def describe(error: BaseException) -> str:
    """One line for an error: an OSError names its file, others give their message (first line)."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    text = str(error) or type(error).__name__
    return text.splitlines()[0] if text.strip() else type(error).__name__
