"""release_free_memory: the free pages glibc keeps inside its heap go back to the system."""

import json
import subprocess
import sys

import pytest

# Run in a fresh process: the heap of a test session that has run other tests is in no known state.
SCENARIO = """
import json, numpy as np, psutil
from bcls.data.infra.runtime import release_free_memory
rss = lambda: psutil.Process().memory_info().rss / 2**20
big = np.ones(30 << 17)
del big  # a freed 30 MiB array raises glibc's mmap threshold: the next 1 MiB arrays come from the heap
arrays, pins = [], []
for i in range(300):
    arrays.append(np.ones(1 << 17))
    pins.append(np.ones(512 + i))  # small arrays between them: the heap cannot shrink from its top
del arrays
kept = rss()
print(json.dumps({"kept": kept, "released": release_free_memory(), "after": rss()}))
"""


def test_freed_heap_arrays_are_given_back():
    out = json.loads(subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True,
                                    check=True).stdout)
    if not out["released"]:
        pytest.skip("this C library has no malloc_trim")
    assert out["kept"] - out["after"] > 200, out  # of the 300 MiB freed, which the process kept until the call
