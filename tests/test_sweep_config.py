"""Experiment files: expansion, sizes, scale, and refusal of bad input before anything runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fastfault.errors import InputError
from fastfault.sweep import config as cfg
from fastfault.sweep.config import load_experiment, parse_experiment

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
[experiment]
name = "demo"
replicates = 2

[scale]
default = 1
params = ["npages", "n"]

[fixed]
profile = "linux-6.18"

[sweep]
fault_around_bytes = ["4KiB", "64KiB", 2097152]

[[sweep.zip]]
arch = ["x86_64", "arm64", "arm64-nohaf"]
prefault = ["young", "old", "arch"]

[[workloads]]
name = "zipf"
params = { npages = 1024, n = 5000 }

[[workloads]]
name = "sequential"
label = "seq"
params = { npages = 512 }
"""


def write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def refuse(tmp_path: Path, text: str, *fragments: str) -> str:
    """Loading ``text`` raises one line naming the file and every fragment."""
    p = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_experiment(p)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{p}: "), msg
    for frag in fragments:
        assert frag in msg, (frag, msg)
    return msg


def test_expansion_order_sizes_seeds(tmp_path):
    exp = load_experiment(write(tmp_path, GOOD))
    assert exp.name == "demo"
    assert len(exp.points) == 2 * 3 * 3  # workloads x fault_around x zip group
    assert exp.seeds == (0, 1)
    runs = exp.runs()
    assert len(runs) == 36
    assert [r.key for r in runs] == sorted(r.key for r in runs)
    p0, p1, p2 = exp.points[:3]
    assert p0.workload.label == "zipf" and p0.knobs["fault_around_bytes"] == 4096
    assert (p0.knobs["arch"], p0.knobs["prefault"]) == ("x86_64", "young")
    assert (p1.knobs["arch"], p1.knobs["prefault"]) == ("arm64", "old")
    assert p2.knobs["prefault"] is None  # "arch": the architecture's default
    assert exp.points[3].knobs["fault_around_bytes"] == 65536
    assert exp.points[-1].knobs["fault_around_bytes"] == 2 << 20
    assert exp.points[-1].workload.label == "seq"
    assert exp.axes["arch"] == ["x86_64", "arm64", "arm64-nohaf"]
    assert all(p.knobs["profile"] == "linux-6.18" for p in exp.points)


def test_scale_multiplies_sizes_and_changes_the_plan(tmp_path):
    p = write(tmp_path, GOOD)
    base = load_experiment(p)
    big = load_experiment(p, scale=4)
    assert big.scale == 4.0
    assert big.points[0].workload.params == {"npages": 4096, "n": 20000}
    assert base.plan_sha256 != big.plan_sha256
    assert base.sha256 == big.sha256  # same file
    assert load_experiment(p).plan_sha256 == base.plan_sha256  # deterministic


def test_seeds_list_and_cli_overrides(tmp_path):
    text = GOOD.replace("replicates = 2", "seeds = [5, 9]")
    exp = load_experiment(write(tmp_path, text))
    assert exp.seeds == (5, 9)
    over = load_experiment(write(tmp_path, GOOD, "b.toml"), overrides={"fault_around_bytes": "16KiB"}, seed=3)
    assert len(over.points) == 2 * 3
    assert {p.knobs["fault_around_bytes"] for p in over.points} == {16384}
    assert over.seeds == (3, 4)
    with pytest.raises(InputError, match=r"--arch: .*zip"):
        load_experiment(write(tmp_path, GOOD, "c.toml"), overrides={"arch": "arm64"})


def test_canonical_experiments_validate():
    for name in ("fault_around", "prefault_policy", "large_folios", "kernel_profiles"):
        exp = load_experiment(ROOT / "experiments" / f"{name}.toml", scale=0.05)
        assert exp.name == name and exp.points


def test_trace_experiment_validates():
    if not (ROOT / "tests" / "data" / "traces" / "ls_usr_lib.fftrace").is_file():
        pytest.skip("recorded traces are not in this checkout")
    exp = load_experiment(ROOT / "experiments" / "real_traces.toml")
    assert {p.workload.label for p in exp.points} == {"ls -l /usr/lib", "python3 start-up"}
    assert all(Path(p.workload.trace).is_file() for p in exp.points)


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        ("[fixed]", "[fixd]", ["fixd: unknown key"]),
        ('profile = "linux-6.18"', 'profile = "linux-6.18"\nbogus = 1', ["fixed.bogus", "unknown knob"]),
        ("replicates = 2", "replicates = 2\nrepeats = 3", ["experiment.repeats", "unknown key"]),
        ('label = "seq"', 'lable = "seq"', ["workloads[1].lable", "unknown key"]),
    ],
)
def test_unknown_keys(tmp_path, old, new, fragments):
    refuse(tmp_path, GOOD.replace(old, new), *fragments)


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        ('profile = "linux-6.18"', "profile = 618", ["fixed.profile", "expected a string"]),
        ('"4KiB", "64KiB"', 'true, "64KiB"', ["sweep.fault_around_bytes[0]", "got a boolean"]),
        ('"4KiB", "64KiB"', '"4 pages", "64KiB"', ["sweep.fault_around_bytes[0]", "not a size"]),
        ("replicates = 2", 'replicates = "2"', ["experiment.replicates", "positive integer"]),
        ('profile = "linux-6.18"', 'profile = "linux-6.18"\nthp_ratio = "half"', ["fixed.thp_ratio"]),
        ("[[sweep.zip]]", "cached = 0.5\n[[sweep.zip]]", ["sweep.cached", "expected a list"]),
        ("params = { npages = 512 }", "params = 512", ["workloads[1].params", "expected a table"]),
    ],
)
def test_wrong_types(tmp_path, old, new, fragments):
    assert old in GOOD
    refuse(tmp_path, GOOD.replace(old, new, 1), *fragments)


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        ('"4KiB", "64KiB", 2097152', '"4KiB", "4MiB"', ["sweep.fault_around_bytes[1]", "EINVAL"]),
        ('"x86_64", "arm64"', '"x86_64", "sparc"', ["sweep.zip[0].arch[1]", "sparc"]),
        ('"young", "old", "arch"', '"young", "stale", "arch"', ["sweep.zip[0].prefault[1]"]),
        ('profile = "linux-6.18"', 'profile = "linux-4.4"', ["fixed.profile", "linux-4.4"]),
        ('profile = "linux-6.18"', 'profile = "linux-6.18"\nthp_ratio = 1.5', ["fixed.thp_ratio", "[0, 1]"]),
        ('profile = "linux-6.18"', 'profile = "linux-6.18"\ncached = -0.5', ["fixed.cached"]),
        (
            'profile = "linux-6.18"',
            'profile = "linux-6.18"\nfolio_orders = { 12 = 1.0 }',
            ["fixed.folio_orders"],
        ),
        ('"young", "old", "arch"', '"young", "old"', ["sweep.zip[0]", "equal lengths"]),
        ('name = "zipf"', 'name = "zipfian"', ["workloads[0].name", "unknown workload"]),
        ("npages = 1024, n = 5000", "npages = 1024, n = 5000, skew = 2", ["workloads[0].params.skew"]),
        ("npages = 1024, n = 5000", "npages = 0, n = 5000", ["workloads[0].params.npages"]),
        ('label = "seq"', 'label = "zipf"', ["workloads[1].label", "twice"]),
        ("replicates = 2", "seeds = [1, 1]", ["experiment.seeds", "repeat"]),
        ("default = 1", "default = 0", ["scale.default", "positive"]),
        ("[sweep]", '[sweep]\nprofile = ["linux-6.6"]\n', ["sweep.profile", "already set by fixed.profile"]),
    ],
)
def test_impossible_values(tmp_path, old, new, fragments):
    assert old in GOOD
    refuse(tmp_path, GOOD.replace(old, new, 1), *fragments)


def test_traces_are_resolved_and_checked(tmp_path):
    import numpy as np

    from fastfault.trace import Mapping, make_trace, save_trace

    base = 0x7F0000000000
    m = Mapping(base, base + 64 * 4096, 0, "r--s", "/data/file", 64 * 4096)
    save_trace(
        tmp_path / "t.fftrace",
        make_trace(np.arange(64) + (base >> 12), np.zeros(64, np.uint8), mappings=[m]),
    )
    exp = load_experiment(write(tmp_path, '[[workloads]]\ntrace = "t.fftrace"\n'))
    assert exp.points[0].workload.trace == str((tmp_path / "t.fftrace").resolve())
    assert exp.points[0].workload.label == "t"
    refuse(tmp_path, '[[workloads]]\ntrace = "missing.fftrace"\n', "workloads[0].trace", "no such trace file")
    (tmp_path / "junk.fftrace").write_bytes(b"not a zip")
    refuse(tmp_path, '[[workloads]]\ntrace = "junk.fftrace"\n', "workloads[0].trace", "not a readable")
    refuse(tmp_path, '[[workloads]]\ntrace = "t.fftrace"\nparams = { n = 1 }\n', "takes no parameters")
    refuse(tmp_path, '[[workloads]]\ntrace = "t.fftrace"\nname = "zipf"\n', "exactly one of name")


def test_not_toml_and_missing_file(tmp_path):
    refuse(tmp_path, "[experiment\nname=", "not valid TOML")
    with pytest.raises(InputError, match="cannot read"):
        load_experiment(tmp_path / "nope.toml")
    refuse(tmp_path, "[experiment]\nname = 'x'\n", "workloads: missing")


@pytest.mark.parametrize(
    ("knobs", "fragments"),
    [
        ('tlb = "pentium-pro"', ["fixed.tlb", "pentium-pro"]),
        ('cost = "cheap"', ["fixed.cost", "cheap"]),
        ('aging_policy = "fifo"', ["fixed.aging_policy", "fifo"]),
        ("aging_interval = -5", ["fixed.aging_interval", "negative"]),
        ('aging_evict = "yes"', ["fixed.aging_evict", "expected a boolean"]),
    ],
)
def test_simulator_extension_values_are_checked(tmp_path, knobs, fragments):
    refuse(tmp_path, GOOD.replace('profile = "linux-6.18"', f'profile = "linux-6.18"\n{knobs}'), *fragments)


def test_simulator_extensions_valid(tmp_path):
    text = GOOD.replace(
        'profile = "linux-6.18"',
        'profile = "linux-6.18"\ntlb = "none"\ncost = "auto"\naging_interval = 1000\naging_policy = "mglru"',
    )
    exp = load_experiment(write(tmp_path, text))
    kw = exp.runs()[0].kwargs()
    assert (kw["tlb"], kw["cost"], kw["aging_interval"], kw["aging_policy"]) == (
        "none",
        "auto",
        1000,
        "mglru",
    )


def test_allow_list_is_the_one_place_to_extend(tmp_path, monkeypatch):
    """A knob added to KNOBS that fastfault.api.run does not take yet is refused, naming the key; once
    run (and the simulator) take it, its values are validated by building a tiny simulator."""
    monkeypatch.setitem(cfg.KNOBS, "frobnicate", cfg.Knob((str,), sim=True, help="test knob"))
    text = GOOD.replace('profile = "linux-6.18"', 'profile = "linux-6.18"\nfrobnicate = "on"')
    refuse(tmp_path, text, "fixed.frobnicate", "no 'frobnicate' option")

    import fastfault.api as api
    import fastfault.model as model

    seen = []

    class Sim(model.Simulator):
        def __init__(self, files, vmas, config=None, frobnicate="off", **kw):
            if frobnicate not in ("on", "off"):
                raise InputError(f"frobnicate: {frobnicate!r} is not on or off")
            seen.append(frobnicate)
            super().__init__(files, vmas, config, **kw)

    def run(workload="sequential", *, frobnicate="off", **kw):  # what api.run will look like
        raise AssertionError("validation must not run anything")

    monkeypatch.setattr(model, "Simulator", Sim)
    monkeypatch.setattr(api, "run", run)
    exp = load_experiment(write(tmp_path, text, "ok.toml"))
    assert seen == ["on"] * 9  # one tiny simulator per distinct (Config, extension) setting: 3 x 3
    assert all(p.knobs["frobnicate"] == "on" for p in exp.points)
    assert exp.runs()[0].kwargs()["frobnicate"] == "on"
    refuse(tmp_path, text.replace('frobnicate = "on"', 'frobnicate = "maybe"'), "fixed.frobnicate", "maybe")


def test_parse_from_text_names_the_source():
    with pytest.raises(InputError, match=r"^<string>: fixed.arch: "):
        parse_experiment('[fixed]\narch = "vax"\n[[workloads]]\nname = "sequential"\n')


def test_cli_refuses_bad_experiment_and_writes_nothing(tmp_path, cli):
    bad = write(tmp_path, GOOD.replace('"4KiB", "64KiB"', '"4KiB", "3MiB"'))
    out = tmp_path / "out"
    r = cli("sweep", bad, "--out", out)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "sweep.fault_around_bytes[1]" in lines[0] and str(bad) in lines[0], r.stderr
    assert not out.exists()
    ok = write(tmp_path, GOOD, "ok.toml")
    r = cli("sweep", ok, "--out", out, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "18 points x 2 replicates = 36 runs" in r.stdout
    assert not out.exists()


def test_scale_knobs(tmp_path):
    text = GOOD.replace('params = ["npages", "n"]', 'params = ["npages", "n"]\nknobs = ["aging_interval"]')
    text = text.replace('profile = "linux-6.18"', 'profile = "linux-6.18"\naging_interval = 10000')
    exp = load_experiment(write(tmp_path, text), scale=0.5)
    assert exp.fixed["aging_interval"] == 5000
    refuse(tmp_path, text.replace('knobs = ["aging_interval"]', 'knobs = ["npages"]'), "scale.knobs")
