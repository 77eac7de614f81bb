"""Benchmark: a 3-node Raft cluster driven in memory, no faults.

Prints how many messages the cores step per second, how many Readys per second, and how many
entries per second get committed and applied on all three nodes, for a few proposal batch
sizes. Numbers only; nothing here asserts on time.

    python bench/raft_sim.py [--entries 20000] [--batch 1 10 100] [--size 64]
"""

from __future__ import annotations

import argparse
import platform
import random
import subprocess
import time
from collections import deque

from etcdlite.raft import (
    Config,
    ConfState,
    HardState,
    MemoryStorage,
    Message,
    RawNode,
    Snapshot,
    SnapshotMetadata,
    StateType,
)


class Cluster:
    def __init__(self, n: int = 3) -> None:
        voters = tuple(range(1, n + 1))
        self.storages: dict[int, MemoryStorage] = {}
        self.nodes: dict[int, RawNode] = {}
        for i in voters:
            st = MemoryStorage()
            meta = SnapshotMetadata(index=1, term=1, conf_state=ConfState(voters))
            st.apply_snapshot(Snapshot(data=b"", metadata=meta))
            st.set_hard_state(HardState(term=1, commit=1))
            self.storages[i] = st
            self.nodes[i] = RawNode(
                Config(id=i, storage=st, rng=random.Random(i), max_inflight=256)
            )
        self.queue: deque[Message] = deque()
        self.applied = dict.fromkeys(voters, 0)
        self.steps = 0
        self.readys = 0

    def pump(self) -> None:
        """Handle every Ready and deliver every message until the cluster is quiet."""
        busy = True
        while busy:
            busy = False
            for i, node in self.nodes.items():
                while node.has_ready():
                    busy = True
                    rd = node.ready()
                    self.readys += 1
                    self.queue.extend(rd.messages)
                    st = self.storages[i]
                    if rd.snapshot is not None:
                        st.apply_snapshot(rd.snapshot)
                    st.append(rd.entries)
                    if rd.hard_state is not None:
                        st.set_hard_state(rd.hard_state)
                    self.queue.extend(rd.messages_after_append)
                    self.applied[i] += len(rd.committed_entries)
                    node.advance(rd)
            while self.queue:
                busy = True
                m = self.queue.popleft()
                self.nodes[m.to].step(m)
                self.steps += 1


def run(entries: int, batch: int, size: int) -> dict[str, float]:
    c = Cluster()
    c.nodes[1].campaign()
    c.pump()
    assert c.nodes[1].status().state == StateType.LEADER
    payload = b"x" * size
    base = dict(c.applied)
    c.steps = c.readys = 0
    leader = c.nodes[1]
    began = time.perf_counter()
    proposed = 0
    while proposed < entries:
        for _ in range(batch):
            leader.propose(payload)
        proposed += batch
        c.pump()
        leader.tick()  # heartbeats flow too, as in a real cluster
    elapsed = time.perf_counter() - began
    done = min(c.applied[i] - base[i] for i in c.applied)
    return {
        "seconds": elapsed,
        "steps_per_s": c.steps / elapsed,
        "readys_per_s": c.readys / elapsed,
        "committed_per_s": done / elapsed,
    }


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--entries", type=int, default=20000)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--size", type=int, default=64, help="bytes per proposal")
    args = p.parse_args()
    print(
        f"commit {_commit()}; {platform.python_implementation()} {platform.python_version()} "
        f"on {platform.machine()} {platform.system()}; 3 nodes, {args.size}-byte entries"
    )
    for batch in args.batch:
        r = run(args.entries, batch, args.size)
        print(
            f"batch {batch:4d}: {r['steps_per_s']:10.0f} steps/s  {r['readys_per_s']:9.0f} "
            f"readys/s  {r['committed_per_s']:9.0f} committed entries/s  ({r['seconds']:.2f}s)"
        )


if __name__ == "__main__":
    main()
