#!/usr/bin/env python3
"""Instructions per function in a callgrind dump, for dumps `callgrind_annotate` misreads.

    scripts/callgrind_top.py OUT.cg [--inclusive] [--per N] [--top 40] [--match REGEX]

callgrind_annotate 3.19 put the whole of a dump taken with `callgrind_control -d` from the
server (scripts/callgrind_step.sh) under glibc's `clone`, the root of every thread. This reads
the dump's cost lines itself: a function's own instructions (self), or with `--inclusive` its own
plus those of the calls it makes (call costs are inclusive in the format; a recursive call is
not counted twice). `--per N` divides by N (the changes over the window, say), `--match` keeps
the functions whose name matches.
"""
import argparse
import collections
import re

ap = argparse.ArgumentParser()
ap.add_argument("dump")
ap.add_argument("--inclusive", action="store_true")
ap.add_argument("--per", type=int, default=0)
ap.add_argument("--top", type=int, default=40)
ap.add_argument("--match", default="")
args = ap.parse_args()

# Names are compressed: `fn=(12) name` the first time, `fn=(12)` after.
names = {}
NAMED = re.compile(r"c?(?:ob|fl|fi|fe|fn)=\((\d+)\)\s*(.*)")


def name_of(spec):
    m = re.match(r"\((\d+)\)\s*(.*)", spec)
    if not m:
        return spec
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), "?" + m.group(1))


own = collections.Counter()
calls = collections.Counter()
fn = callee = None
call_line_next = False
total = 0
with open(args.dump, errors="replace") as f:
    for line in f:
        line = line.rstrip("\n")
        if line.startswith("fn="):
            fn = name_of(line[3:])
        elif line.startswith("cfn="):
            callee = name_of(line[4:])
        elif line.startswith("calls="):
            call_line_next = True
        elif (line[:1].isdigit() or line[:1] in "+-*") and len(line.split()) > 1:
            cost = int(line.split()[-1])
            if call_line_next:
                call_line_next = False
                if callee != fn:
                    calls[fn] += cost
            else:
                own[fn] += cost
                total += cost
        else:
            m = NAMED.match(line)
            if m and m.group(2):
                names[m.group(1)] = m.group(2)

cost = own + calls if args.inclusive else own
print(f"{total:,} instructions in all" + (f", {total // args.per:,} per unit" if args.per else ""))
shown = 0
for name, c in cost.most_common():
    if args.match and not re.search(args.match, name):
        continue
    per = f" {c // args.per:>10,}" if args.per else ""
    print(f"{100 * c / total:6.2f}% {c:>14,}{per}  {name[:150]}")
    shown += 1
    if shown == args.top:
        break
