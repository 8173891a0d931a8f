"""cluster/: every file parses and carries what makes the cluster right for this tool."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def test_every_yaml_file_parses() -> None:
    files = sorted(CLUSTER.glob("*.yaml"))
    assert [f.name for f in files] == ["aws-gpu.yaml", "kuberay-raycluster.yaml", "kuberay-rayjob.yaml"]
    for path in files:
        documents = list(yaml.safe_load_all(path.read_text()))
        assert len(documents) == 1 and isinstance(documents[0], dict), path.name


def test_aws_launcher_head_spot_gpu_workers_autoscaling_setup() -> None:
    config = load("aws-gpu.yaml")
    assert config["provider"]["type"] == "aws" and config["provider"]["region"]
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # no actor is placed on the head
    assert "InstanceMarketOptions" not in head["node_config"]  # on-demand
    assert not re.match(r"(g|p)\d", head["node_config"]["InstanceType"])  # no GPU instance
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert len(workers) == 1
    gpu = workers[0]
    assert gpu["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert re.match(r"(g|p)\d", gpu["node_config"]["InstanceType"])
    assert 0 <= gpu["min_workers"] < gpu["max_workers"] <= config["max_workers"]
    assert config["idle_timeout_minutes"] > 0
    # the project goes to every node and is installed there
    mounted = next(remote for remote, local in config["file_mounts"].items() if local == ".")
    assert any("pip install" in c and mounted in c for c in config["setup_commands"])
    assert {".git", ".venv", "runs"} <= set(config["rsync_exclude"])
    head_start = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in head_start and "--dashboard-host=0.0.0.0" in head_start
    assert "--autoscaling-config" in head_start and "RAY_AUTH_MODE=token" in head_start
    assert "--address=$RAY_HEAD_IP" in " ".join(config["worker_start_ray_commands"])
    assert config["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    assert config["docker"]["image"].startswith("rayproject/ray:") and config["docker"]["image"].endswith("-gpu")


def check_ray_cluster_spec(spec: dict) -> None:
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"] == {"mode": "token"}
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # a string, as Kubernetes wants it
    head_container = head["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head_container["resources"]["limits"]
    (group,) = spec["workerGroupSpecs"]
    assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"] and group["maxReplicas"] >= 1
    pod = group["template"]["spec"]
    (worker,) = pod["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert worker["resources"]["requests"]["nvidia.com/gpu"] == worker["resources"]["limits"]["nvidia.com/gpu"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert "SPOT" in pod["nodeSelector"].values() or "true" in pod["nodeSelector"].values()
    # one image, whose Ray is the declared rayVersion
    assert worker["image"] == head_container["image"]
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{spec['rayVersion']}-" in dockerfile
    assert re.search(r"pip install .*-e \.", dockerfile)


def test_kuberay_raycluster() -> None:
    manifest = load("kuberay-raycluster.yaml")
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayCluster")
    check_ray_cluster_spec(manifest["spec"])


def test_kuberay_rayjob_runs_a_job_of_this_repository_on_the_same_cluster() -> None:
    manifest = load("kuberay-rayjob.yaml")
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayJob")
    spec = manifest["spec"]
    assert spec["rayClusterSpec"] == load("kuberay-raycluster.yaml")["spec"]  # the two never drift
    check_ray_cluster_spec(spec["rayClusterSpec"])
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] >= 1
    entrypoint = spec["entrypoint"].split()
    assert entrypoint[:4] == ["python", "-m", "benchmark", "run"] and "--executor" in entrypoint
    assert entrypoint[entrypoint.index("--executor") + 1] == "ray"
    assert entrypoint[entrypoint.index("--out") + 1].startswith("s3://")
    job = entrypoint[4]
    workdir = re.search(r"^WORKDIR (\S+)", (CLUSTER / "Dockerfile").read_text(), re.M)[1]
    assert job.startswith(workdir + "/") and (ROOT / job[len(workdir) + 1:]).is_file()


@pytest.mark.parametrize("command", ["ray up", "ray down", "kubectl apply", "kubectl delete", "benchmark submit",
                                     "benchmark jobs logs", "benchmark status", "RAY_AUTH_TOKEN", "--new-run"])
def test_readme_covers_start_submit_watch_resume_tear_down(command: str) -> None:
    assert command in (CLUSTER / "README.md").read_text()
