"""A signal the kernel hands to a worker thread still ends the command through its cleanup.

POSIX delivers a process-directed signal to any thread that does not block it. When that was
a worker (in libpq, in Arrow), the main thread stayed asleep in its pause or lock wait, its
handler never ran, and after the grace period the watcher ended the process with "forced
exit", leaving the partial snapshot build behind although the line said it was removed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from support.project import REPO

pytestmark = pytest.mark.pure

# A stand-in command: the main thread sleeps (as at a pause point) inside a try/finally whose
# cleanup must run; a worker thread takes the signal, directed at itself.
SCRIPT = textwrap.dedent(
    """
    import signal, sys, threading, time
    from dbtools import interrupt

    def worker():
        time.sleep(0.3)
        signal.pthread_kill(threading.get_ident(), signal.{sig})

    code = 0
    with interrupt.handling_signals(process=True):
        try:
            with interrupt.outcome("the partial build was removed"):
                threading.Thread(target=worker, daemon=True).start()
                try:
                    time.sleep(600)
                finally:
                    print("cleanup ran", flush=True)
        except interrupt.Interrupted as exc:
            sys.stderr.write("error: " + exc.message + "\\n")
            code = exc.exit_code
    interrupt.exit_process(code)
    """
)


@pytest.mark.parametrize("sig,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_signal_taken_by_a_worker_thread_runs_the_main_threads_cleanup(sig: str, code: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(sig=sig)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == code, proc
    assert proc.stdout == "cleanup ran\n", proc
    assert proc.stderr == f"error: interrupted ({sig}): the partial build was removed\n", proc
