"""etcdlite's benchmark harness (GitHub issue #8).

Run from the repository root, as modules of this package::

    python -m bench.run --smoke                      # ~10 s, for CI
    python -m bench.run --full --out bench/RESULTS.md

Modules: :mod:`bench.run` (the runner and its CLI), :mod:`bench.servers` (starting
etcdlite, real etcd and the no-op server as subprocesses), :mod:`bench.noop_server` (the
no-op grpc.aio server: the limit), :mod:`bench.load` (the multi-process load generator
and its workloads), :mod:`bench.procstat` (server CPU and RSS from ``/proc``),
:mod:`bench.scale` (the scale points), :mod:`bench.report` (the markdown report).
``bench/raft_sim.py`` is a separate, older script (run it by path).
"""
