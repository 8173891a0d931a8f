"""How many actors a run asks for, with which resources (no cluster needed)."""

from __future__ import annotations

import pytest

from benchmark.config import validate_job

from .ray_support import RAY_JOB

pytest.importorskip("ray")


def plan(nodes, pending=100, embedded=False, **runtime):
    from benchmark.engine.ray_executor import plan_actors

    spec = validate_job({**RAY_JOB, "runtime": {**RAY_JOB["runtime"], **runtime}})
    return plan_actors(spec, nodes, pending, embedded)


def test_one_actor_per_gpu_counted_per_node() -> None:
    gpu_nodes = [{"CPU": 8, "GPU": 1}, {"CPU": 8, "GPU": 1}, {"CPU": 8, "GPU": 2}, {"CPU": 4}]
    assert plan(gpu_nodes, num_gpus=1).count == 4
    assert plan(gpu_nodes, num_gpus=0.5).count == 8  # fractions: two actors share a GPU
    # 0.6 GPU fits once per 1-GPU node: leftovers of different nodes do not add up
    assert plan(gpu_nodes, num_gpus=0.6).count == 1 + 1 + 3
    assert plan(gpu_nodes, num_gpus=1, num_cpus=6).count == 3  # the 2-GPU node has CPUs for one
    assert plan(gpu_nodes, num_gpus=1, pending=2).count == 2  # never more actors than shards
    assert plan(gpu_nodes, num_gpus=1, actors=6).count == 6  # runtime.actors decides


def test_cpu_only_machines_and_clusters() -> None:
    laptop = [{"CPU": 8}]
    embedded = plan(laptop, embedded=True, num_gpus=1, num_cpus=2)
    assert (embedded.count, embedded.num_gpus, embedded.num_cpus) == (4, 0, 2)
    assert "no GPU on this machine" in embedded.note
    assert plan(laptop, num_gpus=0, num_cpus=8).count == 1  # one actor per node, torch with 8 threads
    remote = plan(laptop, embedded=False, num_gpus=1)  # maybe autoscaling: ask anyway, say so
    assert (remote.count, remote.num_gpus) == (1, 1) and "autoscaling" in remote.note
