"""Runs a command and prints its wall time and the peak memory of its whole process tree.

  python3 .ci/measure.py make test

Memory is the sum of the resident sets of the command and every process it started, sampled
every quarter second: the test suite's programs run as child processes beside pytest, so the
largest single process (what `/usr/bin/time -v` reports) would understate what the machine
needs. When the command runs pytest, the tests' start and end times (tests/conftest.py writes
them to $GENLAB_TEST_LOG) name the tests during which the tree was largest, and the tests that
ran beside them on other workers. Exits with the command's own
status.
"""

import os
import subprocess
import sys
import tempfile
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root):
    """Resident bytes of `root` and all its descendants, from /proc: (their sum, the largest one's)."""
    children, rss = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # The process ended while we looked.
            continue
        children.setdefault(int(fields[1]), []).append(int(pid))
        rss[int(pid)] = int(fields[21]) * PAGE
    total, largest, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        total, largest = total + rss.get(pid, 0), max(largest, rss.get(pid, 0))
        stack += children.get(pid, [])
    return total, largest


def test_intervals(log_path):
    """{test id: (start, end)} from the log of "time start|end test-id" lines; None when the
    command was not pytest."""
    try:
        with open(log_path) as f:
            lines = [line.rstrip("\n").split(" ", 2) for line in f]
    except FileNotFoundError:
        return None
    intervals = {}
    for t, event, name in lines:
        start, end = intervals.get(name, (None, float("inf")))
        intervals[name] = (float(t), end) if event == "start" else (start, float(t))
    return intervals


def largest_tests(samples, log_path, count=10):
    """Lines naming the `count` tests with the largest tree, from (time, (tree bytes, largest
    process's bytes)) samples and the tests' start and end times; a test's peak is the largest
    sample while it ran. The largest process says whether a program the test ran or pytest itself
    held the memory; with several pytest workers, the tests running beside it at its peak share it."""
    intervals = test_intervals(log_path)
    if not intervals:
        return []
    peaks = {}
    for name, (start, end) in intervals.items():
        peaks[name] = max(((rss, t) for t, rss in samples if start <= t <= end), default=((0, 0), start))
    lines = []
    for name, ((tree, one), when) in sorted(peaks.items(), key=lambda item: -item[1][0][0])[:count]:
        beside = [other for other, (start, end) in intervals.items() if other != name and start <= when <= end]
        line = f"  {tree / 2**30:5.1f} GiB (largest process {one / 2**30:4.1f})  {name}"
        lines.append(line + "".join(f"\n        beside {other}" for other in beside))
    return lines


def main(command):
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        log_path = os.path.join(folder, "tests.log")
        process = subprocess.Popen(command, env=dict(os.environ, GENLAB_TEST_LOG=log_path))
        samples = []
        while process.poll() is None:
            samples.append((time.monotonic(), tree_rss(process.pid)))
            time.sleep(0.25)
        largest = largest_tests(samples, log_path)
    minutes, seconds = divmod(time.monotonic() - start, 60)
    peak = max((tree for _, (tree, _) in samples), default=0)
    if largest:
        print("the tests during which the process tree was largest:", *largest, sep="\n")
    print(
        f"measured: {' '.join(command)}: {int(minutes)} min {seconds:.0f} s, "
        f"peak memory {peak / 2**30:.1f} GiB (the process tree's resident sets, summed)",
        flush=True,
    )
    return process.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
