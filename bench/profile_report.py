"""Summarize py-spy's collapsed stacks (``--format raw``): where a client spends its time.

Usage: ``python bench/profile_report.py FILE [--top N] [--filter TEXT]``. Prints the
functions with the most samples on top of the stack (self) and anywhere in it
(inclusive), as a share of all samples.
"""

from __future__ import annotations

import argparse
import collections
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--filter", default="", help="only frames containing TEXT")
    parser.add_argument("--under", default="",
                        help="instead: what the frames containing TEXT spend their time in "
                             "(the next frame down the stack, or self)")
    args = parser.parse_args(argv)
    self_count: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    with open(args.file) as fh:
        for line in fh:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = stack.split(";")
            total += count
            if args.under:
                for i, frame in enumerate(frames):
                    if args.under in frame:
                        below = frames[i + 1] if i + 1 < len(frames) else "(self)"
                        incl[below] += count
                        break
                continue
            self_count[frames[-1]] += count
            for frame in set(frames):
                incl[frame] += count
    if not total:
        print("no samples")
        return 1
    views = (("below " + args.under, incl),) if args.under else (
        ("self", self_count), ("inclusive", incl))
    for title, counter in views:
        print(f"== {title} ({total} samples)")
        shown = 0
        for frame, count in counter.most_common():
            if args.filter and args.filter not in frame:
                continue
            print(f"{100 * count / total:6.1f}%  {frame}")
            shown += 1
            if shown >= args.top:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
