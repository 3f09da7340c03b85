#!/usr/bin/env python3
"""Types answers at an interactive program's prompts, as a person would, through a real
terminal (pexpect's pty): drive.py LOG STEPS.json -- COMMAND ARGS...

STEPS is a JSON list; each item is ["expect", TEXT], ["send", TEXT] (a line, Enter added),
["send-secret", TEXT] (the same, not written to our own log) or ["interrupt"] (Ctrl-C).
Exit status: 0 when every step happened and the program ended, 3 when an expected text did
not come within the timeout (the program's last output is printed), 4 when it ended early."""
import json
import signal
import sys

import pexpect

# A person's terminal delivers Ctrl-C to a program that may act on it. A program started
# from a background job (`cmd &` in a non-interactive shell, as a CI runner may do) inherits
# SIGINT ignored, and a shell cannot trap a signal it inherited ignored (POSIX): the
# installer's "Run mstunnel-setup again" then never comes. Reset it for the child.
signal.signal(signal.SIGINT, signal.SIG_DFL)

log_path, steps_path = sys.argv[1], sys.argv[2]
command = sys.argv[sys.argv.index("--") + 1:]
steps = json.load(open(steps_path))
log = open(log_path, "w")
child = pexpect.spawn(command[0], command[1:], encoding="utf-8", timeout=90, dimensions=(50, 200))
child.logfile_read = log
interrupted = False
for step in steps:
    kind = step[0]
    if kind == "expect":
        try:
            if interrupted:
                # Right after a Ctrl-C: a person whose first Ctrl-C seems to do nothing presses
                # it again. (The runs where none was acted on had SIGINT ignored from their
                # parent; see the reset at the top.)
                for attempt in range(3):
                    try:
                        child.expect_exact(step[1], timeout=15)
                        break
                    except pexpect.TIMEOUT:
                        if attempt == 2:
                            raise
                        child.sendintr()
                interrupted = False
            else:
                child.expect_exact(step[1])
        except pexpect.TIMEOUT:
            print(f"drive.py: timed out waiting for {step[1]!r}; last output:\n{child.before[-800:]}")
            sys.exit(3)
        except pexpect.EOF:
            print(f"drive.py: the program ended while waiting for {step[1]!r}; last output:\n{child.before[-800:]}")
            sys.exit(4)
    elif kind in ("send", "send-secret"):
        child.sendline(step[1])
    elif kind == "interrupt":
        child.sendintr()
        interrupted = True
child.expect(pexpect.EOF, timeout=180)
child.close()
sys.exit(0)
