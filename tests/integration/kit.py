"""Shared by the plugin-template tests: render a template with ``tieline plugin new``,
install the result editable into this interpreter, and run ``tieline`` commands as
processes, as an integrator does."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

TIELINE = str(Path(sys.executable).with_name("tieline"))


def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command; assert that it succeeded, showing its output if not."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


def _build_isolation() -> list[str]:
    """Build with this environment's setuptools when it can (no index needed, faster)."""
    try:
        major = int(version("setuptools").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return []
    return ["--no-build-isolation"] if major >= 68 else []


@contextmanager
def installed_plugin(out: Path, name: str, kind: str) -> Iterator[Path]:
    """Render the ``kind`` template as plugin ``name`` into ``out`` with ``tieline plugin
    new``, install it editable into this interpreter, and uninstall it on exit.

    :returns: the project folder.
    """
    distribution = "tieline-" + name.replace("_", "-")
    rendered = run(TIELINE, "plugin", "new", name, "--kind", kind, cwd=out)
    assert f"wrote the {kind} plugin '{name}' to {distribution}" in rendered.stdout
    folder = out / distribution
    run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", *_build_isolation(), "-e",
        str(folder))
    try:
        yield folder
    finally:
        run(sys.executable, "-m", "pip", "uninstall", "-y", "-q", distribution)


def run_generated_tests(folder: Path) -> str:
    """Run the rendered plugin's own tests; assert that they ran and passed."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                            capture_output=True, text=True, timeout=300, cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
    return result.stdout


def start(args: list[str], ready: str) -> tuple[subprocess.Popen, str]:
    """Start a tieline command and wait for the line of its output that says it is ready."""
    proc = subprocess.Popen([TIELINE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        if ready in line:
            return proc, line
    proc.wait(5)
    raise AssertionError(f"tieline {args[0]} stopped: {proc.stderr.read()}")


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM a started command; assert that it stopped cleanly; its remaining output."""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, out + err
    return out + err
