"""Helper process for test_jsonfile.py: writers that the test kills with SIGKILL.

Usage::

    python jsonfile_writer.py TARGET A.json B.json

Imports ``tieline.settings.jsonfile`` once, loads the two documents, then serves commands read
line by line from stdin, so that each writer starts in a millisecond instead of paying the
interpreter's start-up:

``start``
    fork a writer that calls ``write_json_atomic(TARGET, ...)`` forever, alternating between
    document A and document B; print ``pid <pid>``; wait until the writer dies and print
    ``died <signal number>`` (``exit <code>`` if it exited by itself).

End of input ends the helper.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import traceback
from pathlib import Path

from tieline.settings.jsonfile import write_json_atomic


def write_forever(target: Path, documents: list[object]) -> None:
    """Replace ``target`` with each document in turn, until killed."""
    for document in itertools.cycle(documents):
        write_json_atomic(target, document)


def main() -> None:
    target = Path(sys.argv[1])
    documents = [json.loads(Path(name).read_text(encoding="utf-8")) for name in sys.argv[2:]]
    for command in sys.stdin:
        if command.strip() != "start":
            raise SystemExit(f"unknown command {command!r}")
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the writer: never returns into the command loop
            try:
                write_forever(target, documents)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(1)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            print(f"died {os.WTERMSIG(status)}", flush=True)
        else:
            print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
