"""Runs a shell command line in an interactive-like bash with job control, on a pseudo-terminal
of its own (as a person's shell would), and prints everything written to that terminal.

The e2e tests use it to start `eftcloud terminal ... &` the way the README does: a background job
that reads its terminal is stopped by the shell (`Stopped (tty input)`)."""
import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time

master, slave = pty.openpty()


def controlling_terminal():
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


proc = subprocess.Popen(
    ["bash", "--norc", "--noprofile", "-c", "set -m\n" + sys.argv[1]],
    stdin=slave,
    stdout=slave,
    stderr=slave,
    preexec_fn=controlling_terminal,
)
os.close(slave)
out = b""
deadline = time.time() + float(sys.argv[2] if len(sys.argv) > 2 else 30)
while time.time() < deadline:
    ready, _, _ = select.select([master], [], [], 0.1)
    if ready:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    elif proc.poll() is not None:
        break
proc.kill()
sys.stdout.write(out.decode(errors="replace"))
