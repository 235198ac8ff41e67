"""settle_heap: start-up's objects leave the collector's generations; later garbage does not."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_settle_heap_freezes_start_up_and_later_cycles_are_still_collected() -> None:
    # In a child process: freezing the test runner's heap would outlive this test.
    code = textwrap.dedent("""
        import gc, weakref
        import sessiongate.app as app
        assert gc.get_freeze_count() == 0
        app.settle_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 1000, frozen  # the modules' objects, at least

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only the collector frees it
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
        assert gc.get_freeze_count() == frozen
        print("ok", frozen)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")
