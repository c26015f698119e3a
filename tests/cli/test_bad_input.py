"""A bad job file or run directory: one clear message naming field and value, exit 2, no traceback, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cosearch.cli.main import main

GOOD = yaml.safe_load((Path(__file__).parents[2] / "examples" / "digits.yaml").read_text())


def with_change(path: str, value):
    job = yaml.safe_load(yaml.safe_dump(GOOD))
    *parents, last = path.split(".")
    node = job
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return job


CASES = [
    # (description, job mapping, fragments the message must contain)
    ("unknown top-level key", {**GOOD, "epochz": 3}, ["epochz", "unknown key", "training"]),
    ("unknown nested key", with_change("training.epochz", 3), ["training.epochz", "unknown key", "epochs"]),
    ("bits 3.5", with_change("compression.weight_bits", [4, 3.5]), ["compression.weight_bits[1]", "3.5", "integer"]),
    ("bits 9", with_change("compression.weight_bits", [9]), ["compression.weight_bits[0]", "9", "2..8"]),
    ("sparsity 1.2", with_change("compression.sparsity", [0.0, 1.2]), ["compression.sparsity[1]", "1.2", "< 1"]),
    ("negative budget", with_change("budgets", ["latency_ms <= -2"]), ["budgets[0]", "-2", "positive"]),
    ("budget syntax", with_change("budgets", ["latency < 2"]), ["budgets[0]", "METRIC <= NUMBER"]),
    ("budget metric", with_change("budgets", ["speed <= 2"]), ["budgets[0]", "speed", "accuracy"]),
    ("zero trials", with_change("resources.trials", 0), ["resources.trials", "0", ">= 1"]),
    ("zero concurrency", with_change("resources.concurrency", 0), ["resources.concurrency", ">= 1"]),
    ("wrong type", with_change("training.epochs", "ten"), ["training.epochs", "'ten'", "integer"]),
    ("negative epochs", with_change("training.epochs", -1), ["training.epochs", "-1", ">= 0"]),
    (
        "missing dataset path",
        with_change("task", {"dataset": "cifar10", "path": "/nonexistent/cifar"}),
        ["task.path", "/nonexistent/cifar", "cifar-10-batches-py"],
    ),
    ("unknown dataset", with_change("task.dataset", "mnist"), ["task.dataset", "mnist", "digits"]),
    (
        "unknown strategy",
        with_change("strategy", {"name": "annealing"}),
        ["strategy", "annealing", "regularized_evolution"],
    ),
    (
        "unknown strategy parameter",
        with_change("strategy.populaton_size", 5),
        ["strategy.populaton_size", "population_size"],
    ),
    ("bad strategy value", with_change("strategy.population_size", 1), ["population_size", "1"]),
    ("unknown search space", with_change("search_space", {"name": "nb301"}), ["search space", "nb301", "nb201"]),
    ("bad space parameter", with_change("search_space.channels", 0), ["search_space.channels", "0"]),
    ("unknown objective", with_change("objectives", ["accuracy", "flops"]), ["objectives[1]", "flops", "latency_ms"]),
    ("objectives not a list", with_change("objectives", "accuracy"), ["objectives", "list"]),
    ("too few latency runs", with_change("latency.runs", 5), ["latency.runs", "5", ">= 30"]),
    ("section not a mapping", with_change("training", 3), ["training", "3", "mapping"]),
    ("bad name", with_change("name", "my run/1"), ["name", "my run/1"]),
    (
        "activation bits 6",
        with_change("compression.activation_bits", [6, 32]),
        ["compression.activation_bits[0]", "6", "4, 8"],
    ),
    (
        "rank ratio 0",
        with_change("compression.rank_ratio", [0.0, 1.0]),
        ["compression.rank_ratio[0]", "0.0", "0 < rank_ratio <= 1"],
    ),
    (
        "unknown importance",
        with_change("compression.channel_importance", "hessian"),
        ["compression.channel_importance", "hessian", "taylor"],
    ),
    (
        "unknown calibration",
        with_change("compression.calibration", "entropy"),
        ["compression.calibration", "entropy", "kl"],
    ),
    (
        "distils without teacher",
        with_change("compression.distill_alpha", [0.0, 0.5]),
        ["compression.teacher", "distill_alpha > 0"],
    ),
    (
        "unknown device",
        with_change("budgets", ["latency_ms@rpi5 <= 10"]),
        ["budgets[0]", "latency_ms@rpi5", "unknown device 'rpi5'", "local-cpu"],
    ),
    (
        "energy without a device",
        with_change("objectives", ["accuracy", "energy_mj"]),
        ["objectives[1]", "energy_mj", "analytic device"],
    ),
    (
        "energy of a measured device",
        {**with_change("devices", {"board": {"kind": "measured"}}), "objectives": ["accuracy", "energy_mj@board"]},
        ["objectives[1]", "energy_mj@board", "does not provide energy_mj", "analytic"],
    ),
    ("unknown device kind", with_change("devices", {"x": {"kind": "fpga"}}), ["devices.x.kind", "fpga", "measured"]),
    (
        "field of another kind",
        with_change("devices", {"x": {"kind": "measured", "table": "t.json"}}),
        ["devices.x.table", "not used by this kind", "resource"],
    ),
    ("lut without a table", with_change("devices", {"x": {"kind": "lut"}}), ["devices.x.table", "missing"]),
    (
        "absent lut table",
        with_change("devices", {"x": {"kind": "lut", "table": "/nonexistent/lut.json"}}),
        ["devices.x.table", "/nonexistent/lut.json", "existing"],
    ),
    (
        "bad statistic",
        with_change("devices", {"x": {"kind": "measured", "statistic": "mean"}}),
        ["devices.x.statistic", "mean", "p90"],
    ),
    (
        "too few device runs",
        with_change("devices", {"x": {"kind": "measured", "runs": 3}}),
        ["devices.x.runs", "3", ">= 30"],
    ),
    ("bad device name", with_change("devices", {"my dev": {"kind": "measured"}}), ["devices.my dev", "letters"]),
    (
        "absent profiles file",
        with_change("profiles", "/nonexistent/profiles.yaml"),
        ["profiles", "/nonexistent/profiles.yaml", "devices"],
    ),
    (
        "unknown key in a device",
        with_change("devices", {"b": {"kind": "measured", "foo": 1}}),
        ["devices.b.foo", "unknown key", "statistic"],
    ),
    (
        "strategy parameter of the wrong type",
        with_change("strategy.population_size", "ten"),
        ["strategy.population_size", "'ten'", "int"],
    ),
    (
        "strategy parameter out of range",
        with_change("strategy", {"name": "optuna:tpe", "n_startup_trials": -3}),
        ["strategy.n_startup_trials", "-3", ">= 1"],
    ),
    (
        "evaluator parameter of the wrong type",
        {
            **with_change("evaluator", {"name": "synthetic", "delay_s": "slow"}),
            "compression": {"weight_bits": [32], "sparsity": [0.0]},
        },
        ["evaluator.delay_s", "'slow'", "float"],
    ),
    ("a huge value is cut in the message", with_change("name", "x/" * 100_000), ["name", "characters in all"]),
]


@pytest.mark.parametrize("description, job, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_job_file(tmp_path, monkeypatch, capsys, description, job, fragments):
    monkeypatch.chdir(tmp_path)
    Path("job.yaml").write_text(yaml.safe_dump(job))
    code = main(["run", "job.yaml", "--run-dir", "out"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert err.count("error:") == 1
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} missing from: {err}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]  # nothing written


def test_missing_and_invalid_yaml(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "absent.yaml"]) == 2
    assert "absent.yaml" in capsys.readouterr().err
    Path("broken.yaml").write_text("task: [unclosed\n")
    assert main(["run", "broken.yaml"]) == 2
    assert "YAML" in capsys.readouterr().err
    Path("list.yaml").write_text("- 1\n- 2\n")
    assert main(["run", "list.yaml"]) == 2
    assert "mapping" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.yaml", "list.yaml"]


def test_job_files_that_are_not_jobs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("latin1.yaml").write_bytes('name: "caf\xe9"\n'.encode("latin-1"))
    assert main(["run", "latin1.yaml"]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    Path("twice.yaml").write_text("name: a\nname: b\n")
    assert main(["run", "twice.yaml"]) == 2
    err = capsys.readouterr().err
    assert "key given twice" in err and "line 2" in err
    Path("big.yaml").write_text("# " + "x" * (2 << 20) + "\n")
    assert main(["run", "big.yaml"]) == 2
    assert "at most 1024 KiB" in capsys.readouterr().err
    aliases = ["a: &a [" + ",".join(["x"] * 10) + "]"]
    aliases += [f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join(["*" + chr(96 + i)] * 10) + "]" for i in range(1, 8)]
    Path("bomb.yaml").write_text("\n".join(aliases) + "\n")
    assert main(["run", "bomb.yaml"]) == 2
    assert "at most 100000 values" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.yaml", "bomb.yaml", "latin1.yaml", "twice.yaml"]


@pytest.mark.parametrize(
    "address, fragment",
    [("127.0.0.1:1", "no Ray head answers"), ("ray://127.0.0.1:10001", "not supported"), ("nonsense", "HOST:PORT")],
)
def test_addresses_without_a_cluster_fail_fast(tmp_path, monkeypatch, capsys, address, fragment):
    monkeypatch.chdir(tmp_path)
    Path("job.yaml").write_text(
        yaml.safe_dump({"evaluator": {"name": "synthetic"}, "compression": {"weight_bits": [32], "sparsity": [0.0]}})
    )
    assert main(["run", "job.yaml", "--run-dir", "out", "--address", address]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and not Path("out").exists()


@pytest.mark.parametrize("command", ["resume", "status", "pareto"])
def test_run_dir_that_is_not_a_run(tmp_path, capsys, command):
    (tmp_path / "notes.txt").write_text("hello")
    assert main([command, str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a cosearch run directory" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_export_of_missing_run(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--pick", "1"]) == 2
    assert "not a cosearch run directory" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()


def test_real_process_prints_no_traceback(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(with_change("compression.sparsity", [1.2])))
    out = subprocess.run(
        [sys.executable, "-m", "cosearch.cli.main", "run", str(job), "--run-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "compression.sparsity[0]" in out.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "kind, content, fragments",
    [
        ("lut", "{not json", ["devices.x.table", "latency table"]),
        (
            "lut",
            '{"format": "cosearch-latency-table/1", "device": "x", "input_shape": [3, 32, 32], "entries": {"k": 1.0}}',
            ["devices.x.table", "input shape [1, 32, 32]"],  # the demo's digits, resized
        ),
        (
            "lut",
            '{"format": "cosearch-latency-table/1", "device": "x", "input_shape": [1, 32, 32], "entries": {"k": "fast"}}',
            ["devices.x.table", "malformed"],
        ),
        (
            "analytic",
            '{"(1, 2)-W4A4": {"latency": 1, "energy": 1}}',
            ["devices.x.table", "(cin, cout, H, k, stride, pad, groups)-W4A8"],
        ),
    ],
    ids=["lut-not-json", "lut-other-input-shape", "lut-bad-entry", "analytic-bad-key"],
)
def test_bad_device_table(tmp_path, monkeypatch, capsys, kind, content, fragments):
    monkeypatch.chdir(tmp_path)
    Path("table.json").write_text(content)
    Path("job.yaml").write_text(yaml.safe_dump(with_change("devices", {"x": {"kind": kind, "table": "table.json"}})))
    assert main(["run", "job.yaml", "--run-dir", "out"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} missing from: {err}"
    assert not Path("out").exists()


@pytest.mark.ray
def test_a_device_no_node_has_fails_before_anything_is_written(ray_local, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    job = with_change("devices", {"rpi4": {"kind": "measured", "resource": "device:rpi4"}})
    job["budgets"] = ["latency_ms@rpi4 <= 10"]
    Path("job.yaml").write_text(yaml.safe_dump(job))
    assert main(["run", "job.yaml", "--run-dir", "out"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    for fragment in ("'rpi4'", "device:rpi4", "no node", "ray start", "--resources"):
        assert fragment in err, f"{fragment!r} missing from: {err}"
    assert "Traceback" not in err and not Path("out").exists()


def test_an_address_where_something_else_listens_fails_fast(tmp_path, monkeypatch, capsys):
    """A port that accepts TCP but is no Ray head: ray.init waited minutes; now a clear error in seconds."""
    import socket
    import time

    monkeypatch.chdir(tmp_path)
    Path("job.yaml").write_text(
        yaml.safe_dump({"evaluator": {"name": "synthetic"}, "compression": {"weight_bits": [32], "sparsity": [0.0]}})
    )
    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts (the kernel's backlog), never speaks
        start = time.monotonic()
        code = main(["run", "job.yaml", "--run-dir", "out", "--address", f"127.0.0.1:{server.getsockname()[1]}"])
    assert code == 2 and time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert "not a Ray head" in err and "Traceback" not in err and not Path("out").exists()
