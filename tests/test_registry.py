"""The registry under concurrent first use (the app's and the load test's threads arrive together)."""
import subprocess
import sys
import textwrap

from museumtok import registry


def test_first_use_from_many_threads_sees_the_whole_table():
    # a fresh interpreter, so that the zoo is imported for the first time by racing threads
    code = textwrap.dedent("""
        import threading
        from museumtok import registry
        seen, start = [], threading.Barrier(8)
        def look():
            start.wait()
            seen.append(tuple(registry.names()))
        ts = [threading.Thread(target=look) for _ in range(8)]
        [t.start() for t in ts]; [t.join() for t in ts]
        print(len(set(seen)), len(seen[0]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "1"                                  # every thread saw the same table
    assert int(out[1]) == len(registry.names())           # and it was the whole one
