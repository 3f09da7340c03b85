"""Group `perf script -F comm,ip,sym,dso` call chains by the system call they ran under.

Reads perf script output on stdin (one sample = a header line and call-chain lines, blank line
between samples). Prints, per outermost system call (or "user" when the sample was in user
space), the share of all samples and the share of that group that ran in softirq context,
then the top symbols of the user-space part.
"""
import collections
import re
import sys

SYSCALL = re.compile(r"^(?:__x64_sys_|__do_sys_|__se_sys_)(\w+)")

def samples(stream):
    cur = []
    for line in stream:
        line = line.rstrip("\n")
        if not line.strip():
            if cur:
                yield cur
            cur = []
            continue
        cur.append(line)
    if cur:
        yield cur

groups = collections.Counter()
soft = collections.Counter()
user_syms = collections.Counter()
dsos = collections.Counter()
total = 0
for s in samples(sys.stdin):
    frames = []
    for line in s[1:]:
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        rest = parts[1]
        m = re.match(r"(.*?)\s+\(([^)]*)\)$", rest)
        sym, dso = (m.group(1), m.group(2)) if m else (rest, "?")
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
        frames.append((sym, dso))
    if not frames:
        continue
    total += 1
    leaf_sym, leaf_dso = frames[0]
    dsos[leaf_dso.rsplit("/", 1)[-1]] += 1
    name = None
    # the system call: the kernel frame just inside do_syscall_64 (ksys_write, __x64_sys_…),
    # named after the libc wrapper above the entry when that frame was inlined away
    for i, (sym, dso) in enumerate(frames):
        if sym in ("do_syscall_64", "entry_SYSCALL_64_after_hwframe", "entry_SYSCALL_64"):
            above = [s for s, d in frames[i + 1:] if "kernel" not in d]
            inner = frames[i - 1][0] if i > 0 else ""
            m = SYSCALL.match(inner)
            if above:
                name = re.sub(r"^(__GI___libc_|__libc_|__GI_|__)", "", above[0])
            elif m:
                name = m.group(1)
            else:
                name = inner or "syscall entry"
            break
    if name is None:
        kernel = "kernel" in leaf_dso
        name = "kernel, no syscall" if kernel else "user"
    groups[name] += 1
    if any(sym in ("__do_softirq", "net_rx_action", "handle_softirqs", "do_softirq") for sym, _ in frames):
        soft[name] += 1
    if "kernel" not in leaf_dso:
        user_syms["%s (%s)" % (leaf_sym, leaf_dso.rsplit("/", 1)[-1])] += 1

print("  %-28s %7s %9s" % ("under", "share", "softirq"))
for name, n in groups.most_common():
    print("  %-28s %6.1f%% %8.0f%%" % (name, 100.0 * n / total, 100.0 * soft[name] / n))
print("  samples: %d; by object: %s" % (total, ", ".join("%s %.0f%%" % (d, 100.0 * n / total) for d, n in dsos.most_common(6))))
print("  top user-space symbols:")
for sym, n in user_syms.most_common(8):
    print("    %5.1f%%  %s" % (100.0 * n / total, sym))
