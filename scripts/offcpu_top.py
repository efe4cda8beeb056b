#!/usr/bin/env python3
"""Time off the CPU by cause, for one thread name, from scripts/offcpu_step.sh's recording.

    scripts/offcpu_top.py OUT [--comm chex-pipeline] [--pid PID] [--top 25]

Each switch-out of a thread named COMM is paired with its next switch-in; the interval is charged
to the state it left in and the first frame of its stack that is not the scheduler's own: `S
do_nanosleep` (a timed sleep), `S do_epoll_wait` (waiting for work), `R __GI___writev` (preempted
on the way out of a `writev`), `D io_schedule` (waiting for the disk). A sleep (S or D) is split at
its `sched_wakeup`: the time asleep, then the time woken but waiting for a CPU (the run queue),
which is latency the thread did not choose. For the preempted (R) switches, all of whose time is
run queue, it also counts who took the CPU. Last, for every thread on the machine: how often a
wake-up put the woken thread on its waker's CPU, and how many waited over 1 ms for one. Durations
are wall time, in ms. Made in session 22.
"""
import argparse
import collections
import re
import subprocess

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("--comm", default="chex-pipeline")
ap.add_argument("--pid", help="only this process's threads (the server's: OUT.pids)")
ap.add_argument("--top", type=int, default=25)
args = ap.parse_args()

SWITCH = re.compile(
    r"\s(\d+\.\d+):\s.*prev_comm=(.+?) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+)"
    r" ==> next_comm=(.+?) next_pid=(\d+)"
)
WAKEUP = re.compile(
    r"\[(\d+)\]\s+(\d+\.\d+):\s.*sched_wakeup: comm=(.+?) pid=(\d+) prio=\d+ target_cpu=(\d+)"
)
# Frames that only say "the scheduler ran": the cause is the first frame past them.
PLUMBING = (
    "__schedule", "schedule", "__traceiter", "__pfx", "preempt_schedule", "exit_to_user",
    "do_syscall", "entry_SYSCALL", "irqentry", "asm_", "__cond_resched",
)

script = subprocess.run(
    ["perf", "script", "-i", args.data, "-F", "comm,pid,tid,cpu,time,event,trace,ip,sym"],
    capture_output=True, text=True, check=True,
).stdout
# The switch's text names threads by tid; which process each belongs to comes from the samples
# the thread itself took (its own switches out).
OWNER = re.compile(r"^\s*.+?\s+(\d+)/(\d+)\s+\[\d+\]\s+\d+\.\d+:", re.M)
process_of = {tid: pid for pid, tid in OWNER.findall(script)}


def wanted(comm, tid):
    return comm == args.comm and (args.pid is None or process_of.get(tid) == args.pid)


out = {}  # tid → (time switched out, cause), while it is off the CPU
woken = {}  # tid → time of its wake-up, while it waits for a CPU
spans = collections.defaultdict(list)
queued = collections.defaultdict(list)  # cause → run-queue waits after a sleep
takers = collections.Counter()
every_wake = {}  # any thread's tid → (its wake-up's time, whether it was put on the waker's CPU)
machine = []  # every thread's (wait from wake-up to CPU, put on the waker's CPU)
for block in script.split("\n\n"):
    lines = [line.strip() for line in block.strip().split("\n") if line.strip()]
    if not lines:
        continue
    w = WAKEUP.search(lines[0])
    if w:
        waker_cpu, at, _, tid, target = w.groups()
        every_wake[tid] = (float(at), int(waker_cpu) == int(target))
        if tid in out:
            woken.setdefault(tid, float(at))
        continue
    m = SWITCH.search(lines[0])
    if not m:
        continue
    at, prev, prev_pid, state, nxt, next_pid = m.groups()
    at = float(at)
    if wanted(prev, prev_pid):
        frames = [line.split()[1].split("+")[0] for line in lines[1:] if len(line.split()) > 1]
        cause = next((f for f in frames if not f.startswith(PLUMBING)), "?")
        out[prev_pid] = (at, f"{state.rstrip('+')} {cause}")
        if state.startswith("R"):
            whose = process_of.get(next_pid)
            own = whose is not None and whose == process_of.get(prev_pid)
            takers[f"{nxt} ({'its own process' if own else f'pid {whose}' if whose else 'kernel'})"] += 1
    if next_pid in every_wake:
        t0, beside_waker = every_wake.pop(next_pid)
        machine.append(((at - t0) * 1e3, beside_waker))
    if next_pid in out:
        t0, cause = out.pop(next_pid)
        spans[cause].append((at - t0) * 1e3)
        if next_pid in woken:
            queued[cause].append((at - woken.pop(next_pid)) * 1e3)

if not spans:
    raise SystemExit(f"no switches of a thread named {args.comm!r} in {args.data}")
window = sum(sum(v) for v in spans.values())


def q(v, at):
    return v[min(len(v) - 1, int(len(v) * at))] if v else 0.0


print(
    f"{'cause':50} {'n':>6} {'total ms':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'>1 ms':>6}"
    f" {'of it waiting for a CPU: total, p99, max ms':>44}"
)
for cause, v in sorted(spans.items(), key=lambda kv: -sum(kv[1]))[: args.top]:
    v.sort()
    r = sorted(v if cause.startswith("R") else queued.get(cause, []))
    print(
        f"{cause[:50]:50} {len(v):6} {sum(v):9.1f} {q(v, 0.5):7.3f} {q(v, 0.99):7.3f} {v[-1]:7.2f} "
        f"{sum(x > 1 for x in v):6} {sum(r):24.1f} {q(r, 0.99):9.3f} {max(r, default=0):9.2f}"
    )
preempted = sorted(x for cause, v in spans.items() if cause.startswith("R") for x in v)
waits = sorted(x for v in queued.values() for x in v)
print(f"\noff the CPU in all: {window:.1f} ms")
for what, v in [("preempted (R)", preempted), ("woken from a sleep, then waiting for a CPU", waits)]:
    print(
        f"{what}: {len(v)} times, {sum(v):.1f} ms, p50 {q(v, 0.5):.3f} p99 {q(v, 0.99):.3f} "
        f"max {max(v, default=0):.2f} ms, {sum(x > 1 for x in v)} over 1 ms"
    )
print("who took the CPU when it was preempted:", ", ".join(f"{k} {n}" for k, n in takers.most_common(8)))
if machine:
    late = [d for d, _ in machine if d > 1]
    print(
        f"every thread on the machine: {len(machine)} wake-ups, "
        f"{100 * sum(b for _, b in machine) / len(machine):.0f}% put on the waker's own CPU; "
        f"{len(late)} waited over 1 ms for a CPU ({sum(d > 3 for d in late)} over 3 ms, "
        f"at most {max(late, default=0):.2f} ms)"
    )
