"""The one training harness (museumtok.train.harness) and the `museumtok train` command line built from
the trainers' config dataclasses: nested model configs, flat aliases, help text from the field comments."""
import json
import argparse
import re
import shlex
from pathlib import Path

import pytest
import torch

from museumtok.cli import build_parser
from museumtok.train import config_from_args, field_comments, load_trainers
from museumtok.train.harness import Harness, RunLog, lr_at

ROOT = Path(__file__).resolve().parents[1]


def test_help_shows_each_fields_comment(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "vqvae", "--help"])
    text = "".join(capsys.readouterr().out.split())                # argparse wraps lines (also at hyphens)
    from museumtok.models.vqvae import VQVAEConfig
    from museumtok.train import add_config_arguments
    from museumtok.train.vqvae import VQVAETrainConfig

    assert "--model.codebook-size" in text and "optimizersteps(thelrschedulespansthese)" in text
    # every field's own comment is the help of its own option
    p = argparse.ArgumentParser()
    add_config_arguments(p, VQVAETrainConfig)
    helps = {a.dest: a.help for a in p._actions if a.help != argparse.SUPPRESS}   # not the flat aliases
    for cls, prefix in ((VQVAETrainConfig, ""), (VQVAEConfig, "model__")):
        for name, note in field_comments(cls).items():
            if name not in ("model", "multi"):                       # the nested configs have their own
                assert helps[f"cfg_{prefix}{name}"].startswith(note.replace("%", "%%")), name
                assert "".join(note.split()) in text
    # a comment continued on the next line is one help text; a section header comment is not part of it
    assert field_comments(VQVAETrainConfig)["init"].endswith("VQVAE.grow_from (the same f: a plain continuation)")
    assert "logging" not in field_comments(VQVAETrainConfig)["max_minutes"]


def _documented_train_commands() -> list[str]:
    files = [ROOT / "README.md", *sorted((ROOT / "data" / "checkpoints").glob("*/README.md"))]
    out = []
    for f in files:
        for m in re.finditer(r"museumtok train [a-z][a-z-]*[^`\n]*", f.read_text(encoding="utf-8")):
            for cmd in m.group(0).split(" ; "):
                cmd = cmd.split("#")[0].strip()
                if "…" not in cmd and "..." not in cmd and "--help" not in cmd:
                    out.append(cmd)
    return sorted(set(out))


def test_documented_train_commands_still_parse():
    cmds = _documented_train_commands()
    assert any(c.startswith("museumtok train hyperprior") for c in cmds)
    trainers = load_trainers()
    for cmd in cmds:
        argv = shlex.split(cmd)[1:]
        args = build_parser().parse_args(argv)
        cfg = config_from_args(trainers[argv[1]].config_cls, args)
        assert cfg is not None, cmd


def test_model_config_nested_with_flat_aliases(tmp_path):
    from museumtok.train.dvae import DVAETrainConfig

    trainers = load_trainers()
    cls = trainers["dvae"].config_cls
    cfg = config_from_args(cls, build_parser().parse_args(["train", "dvae", "--kl-weight", "1e-3", "--model.f", "4",
                                                           "--steps", "7"]))
    assert (cfg.model.kl_weight, cfg.model.f, cfg.steps) == (1e-3, 4, 7)
    assert DVAETrainConfig().model.kl_weight == 3e-4                   # the trainer's own default, not the model's
    assert DVAETrainConfig(f=4, hard=True).model == DVAETrainConfig(model=DVAETrainConfig().model.__class__(
        f=4, hard=True, kl_weight=3e-4)).model
    js = tmp_path / "c.json"
    js.write_text('{"model": {"dim": 8}, "codebook_size": 64, "steps": 3}')
    cfg = config_from_args(cls, build_parser().parse_args(["train", "dvae", "--config", str(js), "--dim", "16"]))
    assert (cfg.model.dim, cfg.model.codebook_size, cfg.steps) == (16, 64, 3)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.g = torch.nn.Linear(4, 4)
        self.d = torch.nn.Linear(4, 1)


def _run(run_dir, stop_after=None, resume=True):
    torch.manual_seed(0)
    m = _Tiny()
    opts = {"g": torch.optim.Adam(m.g.parameters(), lr=1e-2), "d": torch.optim.Adam(m.d.parameters(), lr=1e-3)}
    gen = torch.Generator().manual_seed(1)
    h = Harness(m, opts, steps=6, warmup=2, run_dir=run_dir, resume=resume, save_every=2, log_every=1, clip=1.0,
                stop_after=stop_after, generators={"noise": gen}, evaluate=lambda m: {"w": float(m.g.weight.detach().sum())},
                eval_every=3, device="cpu")

    def step_fn(model, x, step):
        y = model.g(x + torch.randn(x.shape, generator=gen))
        g_loss = (y ** 2).mean() - model.d(y).mean()
        d_loss = model.d(y.detach()).mean() if step >= 2 else None            # D starts at step 2
        return {"g": g_loss, "d": d_loss}, {"loss": g_loss}

    res = h.fit(step_fn, lambda step: torch.full((2, 4), float(step)))
    return m, res


def test_harness_resume_with_two_optimizers_and_a_generator_is_exact(tmp_path):
    a, ra = _run(tmp_path / "a")
    _, r1 = _run(tmp_path / "b", stop_after=3)
    assert (r1["steps"], r1["stopped_by"]) == (3, "stop_after")
    torch.manual_seed(123)                                       # the state restores torch's and the generator's RNG
    c, r2 = _run(tmp_path / "b")
    assert (r2["resumed_from"], r2["steps"], ra["stopped_by"]) == (3, 6, "steps")
    for k, v in a.state_dict().items():
        assert torch.equal(v, c.state_dict()[k]), k
    assert [r["loss"] for r in RunLog(tmp_path / "a").rows("train")] == [r["loss"] for r in RunLog(tmp_path / "b").rows("train")]
    assert [int(r["step"]) for r in RunLog(tmp_path / "b").rows("eval")] == [3, 6]
    assert not list((tmp_path / "b" / "state").glob("*.pt")) and not list((tmp_path / "b" / "state").glob("*.bin"))


def test_harness_schedules_and_precision():
    m = torch.nn.Linear(8, 8)
    h = Harness(m, torch.optim.SGD(m.parameters(), lr=0.5), steps=100, warmup=10, max_minutes=1.0,
                schedule="progress", min_lr_ratio=0.05, device="cpu")
    assert h.lr_scale(4, 0.0) == pytest.approx(0.5, rel=0.01)                 # warming up
    assert h.lr_scale(20, 60.0) == pytest.approx(0.05)                        # the time budget is spent: lr at its floor
    assert h.lr_scale(99, 1.0) == pytest.approx(0.05, abs=1e-3)               # ... or the steps are
    s = Harness(m, torch.optim.SGD(m.parameters(), lr=0.5), steps=100, warmup=10, device="cpu")
    assert all(s.lr_scale(i, 0) == lr_at(i, 100, 1.0, 10) for i in (0, 9, 50, 99))
    dtypes = {}
    for precision in ("fp32", "bf16", "fp32"):                                # Accelerate's process-wide state follows
        lin = torch.nn.Linear(8, 8)
        h = Harness(lin, torch.optim.SGD(lin.parameters(), lr=0.1), steps=1, precision=precision, device="cpu",
                    log_every=0)

        def step_fn(model, x, step, p=precision):
            y = x @ model.weight.t()                                          # a matmul inside the step: autocast
            dtypes[p] = y.dtype
            return y.float().pow(2).mean(), {}

        h.fit(step_fn, lambda step: torch.ones(2, 8))
    assert dtypes == {"fp32": torch.float32, "bf16": torch.bfloat16}


def test_every_trainer_field_has_a_comment_for_its_help():
    import dataclasses

    for name, tr in load_trainers().items():
        missing = [f.name for f in dataclasses.fields(tr.config_cls) if not field_comments(tr.config_cls).get(f.name)]
        assert not missing, (name, missing)


def test_optimizer_state_round_trips_through_safetensors(tmp_path):
    """The SFT trainer's resume state: AdamW with two parameter groups, written as safetensors + JSON."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    from museumtok.train.harness import load_optimizer_tensors, optimizer_tensors

    def make():
        torch.manual_seed(0)
        a, b = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
        return a, b, torch.optim.AdamW([{"params": a.parameters(), "lr": 1e-3},
                                        {"params": b.parameters(), "lr": 1e-2}])
    a, b, opt = make()
    for _ in range(3):
        opt.zero_grad()
        b(a(torch.randn(5, 4))).square().mean().backward()
        opt.step()
    tensors, groups = optimizer_tensors(opt)
    save_file(tensors, tmp_path / "optimizer.safetensors")
    (tmp_path / "optimizer.json").write_text(json.dumps(groups))
    _, _, fresh = make()
    load_optimizer_tensors(fresh, load_file(tmp_path / "optimizer.safetensors"),
                           json.loads((tmp_path / "optimizer.json").read_text()))
    want, got = opt.state_dict(), fresh.state_dict()
    assert [g["lr"] for g in got["param_groups"]] == [1e-3, 1e-2]
    assert want["state"].keys() == got["state"].keys() and len(want["state"]) == 4
    for pid, st in want["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(got["state"][pid][k]))


def test_resume_from_a_state_without_base_lr(tmp_path):
    """A state written before the harness kept ``base_lr`` in the param groups still resumes, with this run's peak."""
    _, r1 = _run(tmp_path / "b", stop_after=3)
    meta_file = tmp_path / "b" / "state" / "state.json"
    meta = json.loads(meta_file.read_text())
    for g in meta["param_groups"]:
        g.pop("base_lr", None)
    meta_file.write_text(json.dumps(meta))
    _, r2 = _run(tmp_path / "b")
    assert (r2["resumed_from"], r2["steps"]) == (3, 6)


def test_the_cpu_clock_counts_finished_children():
    """``clock="cpu"`` budgets count the C compiler that torch.compile runs as a child process."""
    import subprocess
    import sys

    from museumtok.train.harness import process_cpu_time

    t0 = process_cpu_time()
    subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass"],
                   check=True)
    assert process_cpu_time() - t0 >= 0.35


@pytest.mark.slow
def test_compiled_training_matches_eager_and_saves_the_plain_module(tmp_path):
    """``Harness(compile=True)`` hands step_fn the compiled module: the same weights after the same steps (to
    float tolerance), a state without ``_orig_mod.`` keys that an eager run resumes, methods reachable through it."""
    from museumtok.train.harness import STATE_DIR

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(6, 16), torch.nn.Linear(16, 6)

        def forward(self, x):
            return self.b(torch.nn.functional.gelu(self.a(x)))

        def penalty(self):
            return 1e-3 * self.a.weight.square().sum()

    def run(compile, run_dir=None, steps=4):
        torch.manual_seed(0)
        net = Net()
        h = Harness(net, torch.optim.Adam(net.parameters(), lr=1e-2), steps=steps, device="cpu", log_every=0,
                    compile=compile, run_dir=run_dir, save_every=2 if run_dir else 0, resume=True)
        seen = []

        def step_fn(model, x, step):
            seen.append(type(model).__name__)
            return (model(x) - x).square().mean() + model.penalty(), {}

        h.fit(step_fn, lambda step: torch.linspace(-1, 1, 24).reshape(4, 6) * (1 + step))
        return net, seen

    eager, seen_e = run(False)
    compiled, seen_c = run(True, tmp_path / "run")
    assert seen_e[0] == "Net" and seen_c[0] == "OptimizedModule"
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[k], v, rtol=1e-4, atol=1e-5)
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "run" / STATE_DIR / "model.safetensors")
    assert sorted(saved) == sorted(eager.state_dict())
    resumed, _ = run(False, tmp_path / "run", steps=6)                        # an eager run continues the compiled one
    assert not torch.equal(resumed.a.weight, compiled.a.weight)
