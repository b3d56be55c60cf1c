"""Runs a command and prints its wall time and the peak memory of its whole process tree.

  python3 .ci/measure.py make test

Memory is the sum of the resident sets of the command and every process it started, sampled
every quarter second: the test suite's programs run as child processes beside pytest, so the
largest single process (what `/usr/bin/time -v` reports) would understate what the machine
needs. When the command runs pytest, the tests' start times (tests/conftest.py writes them to
$GENLAB_TEST_LOG) name the tests during which the tree was largest. Exits with the command's own
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


def largest_tests(samples, log_path, count=10):
    """Lines naming the `count` tests with the largest tree, from (time, (tree bytes, largest
    process's bytes)) samples and the log of (start time, test id) lines; a test's peak is the
    largest sample from its start to the next's. The largest process says whether a program the
    test ran or pytest itself held the memory."""
    try:
        with open(log_path) as f:
            starts = [(float(t), name) for t, name in (line.rstrip("\n").split(" ", 1) for line in f)]
    except FileNotFoundError:  # The command was not pytest.
        return []
    peaks = {}
    for i, (start, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else float("inf")
        peaks[name] = max((rss for t, rss in samples if start <= t < end), default=(0, 0))
    largest = sorted(peaks.items(), key=lambda item: -item[1][0])[:count]
    return [f"  {tree / 2**30:5.1f} GiB (largest process {one / 2**30:4.1f})  {name}" for name, (tree, one) in largest]


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
