"""The one training loop behind every ``museumtok train <name>``.

A trainer builds its model and optimizer(s), then hands :class:`Harness` a ``step_fn(model, batch, step)
-> (loss, logs)``; the harness owns everything around it, the same way for every trainer:

- the schedule: linear warm-up then cosine decay of every parameter group's ``base_lr``, over the steps
  (``schedule="steps"``) or over the training progress max(step/steps, elapsed/budget)
  (``"progress"``: a run stopped by its time budget still ends at the low learning rate) or over the
  budget alone (``"time"``);
- the stop: ``steps``, the time budget ``max_minutes`` (wall clock, or this process's CPU time with
  ``clock="cpu"`` — on a shared machine the fair unit for equal-time comparisons) and ``stop_after``
  (an interruption at a step, the schedule unchanged);
- device placement and mixed precision through Hugging Face Accelerate (one CPU, one GPU or
  ``accelerate launch`` on several); ``precision="bf16"`` autocasts the step (opt-in on CPU: only
  fast where oneDNN has native bf16), fp32 by default; optional channels-last memory layout;
- gradient clipping, the optimizer step (one optimizer, or several updated in turn: a GAN's G and D);
- logs (``train_log.csv``, ``eval_log.csv``, ``log.jsonl`` in ``run_dir``; rows also returned), the
  held-out evaluation every ``eval_every`` steps;
- resume: ``<run_dir>/state/`` holds the model, the optimizers' moments, torch's RNG and any extra
  generators as safetensors plus one JSON file, never a pickle; a rerun continues where it stopped.
  ``trainable_only`` keeps only the parameters that train (a LoRA run on a frozen LLM: megabytes);
- ``stop_on_signal``: SIGTERM/SIGINT finish the step, save and stop (a long run killed cleanly resumes);
- ``compile``: ``step_fn`` gets ``torch.compile(model)`` (inductor, compiled in this process so that the CPU
  clock counts the compilation); the weights, the optimizer and the saved state stay the plain module's.

:func:`save_with_card` is the common end: ``save_pretrained``, ``write_model_card`` and (for
tokenizers) the entropy-coding prior.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

STATE_DIR = "state"
Optimizers = torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer]


# ---- learning-rate schedules ---------------------------------------------------------------------
def lr_at(step: int, steps: int, lr: float, warmup: int, min_ratio: float = 0.1) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``min_ratio``·lr at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def lr_factor(step: int, progress: float, warmup: int, min_ratio: float = 0.05) -> float:
    """Warm-up factor min(1, (step+1)/warmup) times a cosine from 1 to ``min_ratio`` over ``progress`` ∈ [0, 1]."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    return warm * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# ---- resume state: safetensors + JSON ------------------------------------------------------------
def _as_dict(optimizers: Optimizers) -> dict[str, torch.optim.Optimizer]:
    return dict(optimizers) if isinstance(optimizers, Mapping) else {"opt": optimizers}


def _opt_file(i: int, name: str) -> str:
    return "optimizer.safetensors" if i == 0 else f"optimizer-{name}.safetensors"


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state as safetensors-ready tensors ``{"<param id>.<key>": t}`` and JSON (param groups,
    non-tensor values): what :func:`save_state` writes, usable on its own (the SFT trainer's resume state)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: dict) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    groups = [dict(g) for g in meta["param_groups"]]
    for saved, current in zip(groups, opt.param_groups):  # a key the saved groups lack (e.g. ``base_lr`` in a
        for k, v in current.items():                      # state written before the harness set it) keeps
            if k != "params":                             # this run's value instead of vanishing on load
                saved.setdefault(k, v)
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_state(run_dir: Path, model: torch.nn.Module, optimizers: Optimizers, info: dict,
               generators: Mapping[str, torch.Generator] | None = None,
               rngs: Mapping[str, random.Random] | None = None, trainable_only: bool = False) -> None:
    """Write model, optimizer(s) and RNG state atomically (a temp folder renamed over the old one).
    ``trainable_only``: only the parameters that train (a LoRA run on a frozen LLM: megabytes, not the LLM).

    The first optimizer goes to ``optimizer.safetensors`` (with torch's RNG state), others to
    ``optimizer-<name>.safetensors``; param groups, non-tensor state, Python ``random.Random`` states and
    ``info`` to ``state.json``; torch generators as uint8 tensors.
    """
    run_dir = Path(run_dir)
    tmp = run_dir / (STATE_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in _model_state(model, trainable_only).items()},
              tmp / "model.safetensors")
    meta: dict[str, Any] = {}
    for i, (name, opt) in enumerate(_as_dict(optimizers).items()):
        tensors, groups = optimizer_tensors(opt)
        if i == 0:
            tensors["__torch_rng__"] = torch.get_rng_state()
            for g_name, g in (generators or {}).items():
                tensors[f"__generator_{g_name}__"] = g.get_state()
            meta.update(groups)
        else:
            meta.setdefault("optimizers", {})[name] = groups
        save_file(tensors, tmp / _opt_file(i, name))
    if rngs:
        meta["random_states"] = {k: [r.getstate()[0], list(r.getstate()[1]), r.getstate()[2]] for k, r in rngs.items()}
    meta.update(info)
    (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    final = run_dir / STATE_DIR
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def _model_state(model: torch.nn.Module, trainable_only: bool) -> dict[str, torch.Tensor]:
    if not trainable_only:
        return model.state_dict()
    return {k: p for k, p in model.named_parameters() if p.requires_grad}


def load_state(run_dir: Path, model: torch.nn.Module, optimizers: Optimizers,
               generators: Mapping[str, torch.Generator] | None = None,
               rngs: Mapping[str, random.Random] | None = None, trainable_only: bool = False) -> dict:
    """Restore what :func:`save_state` wrote; returns its JSON (step, wall time, …)."""
    d = Path(run_dir) / STATE_DIR
    saved = load_file(d / "model.safetensors")
    if trainable_only:
        expected = set(_model_state(model, True))
        if set(saved) != expected:
            raise ValueError(f"{d}: the saved trainable tensors do not match this model's "
                             f"({len(set(saved) - expected)} unexpected, {len(expected - set(saved))} missing)")
        model.load_state_dict(saved, strict=False)
    else:
        model.load_state_dict(saved)
    meta = json.loads((d / "state.json").read_text())
    for i, (name, opt) in enumerate(_as_dict(optimizers).items()):
        tensors = load_file(d / _opt_file(i, name))
        groups = meta if i == 0 else meta["optimizers"][name]
        if i == 0:
            torch.set_rng_state(tensors.pop("__torch_rng__"))
            for g_name, g in (generators or {}).items():
                g.set_state(tensors.pop(f"__generator_{g_name}__"))
        load_optimizer_tensors(opt, tensors, groups)
    for k, r in (rngs or {}).items():
        v, s, g = meta["random_states"][k]
        r.setstate((v, tuple(s), g))
    return meta


# ---- logs ----------------------------------------------------------------------------------------
class RunLog:
    """Appends rows to ``train_log.csv`` / ``eval_log.csv`` and every row to ``log.jsonl``."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, row: dict) -> None:
        row = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
        path = self.run_dir / f"{kind}_log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        with open(self.run_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps({"kind": kind, **row}) + "\n")

    def clear(self) -> None:
        """Start over: remove the CSV and JSONL logs of an earlier run."""
        for p in list(self.run_dir.glob("*_log.csv")) + [self.run_dir / "log.jsonl"]:
            p.unlink(missing_ok=True)

    def truncate_after(self, step: int) -> None:
        """On resume, drop rows logged after the saved step (they will be logged again)."""
        for kind in ("train", "eval"):
            path = self.run_dir / f"{kind}_log.csv"
            if path.exists():
                rows = list(csv.DictReader(open(path)))
                keep = [r for r in rows if int(r["step"]) <= step]
                with open(path, "w", newline="") as fh:
                    if rows:
                        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                        w.writeheader()
                        w.writerows(keep)
        p = self.run_dir / "log.jsonl"
        if p.exists():
            lines = [ln for ln in p.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
            p.write_text("".join(ln + "\n" for ln in lines))

    def rows(self, kind: str) -> list[dict]:
        path = self.run_dir / f"{kind}_log.csv"
        return list(csv.DictReader(open(path))) if path.exists() else []


# ---- the harness ---------------------------------------------------------------------------------
def _catch_signals(signalled: list[str]) -> dict:
    """Make SIGTERM/SIGINT append their name to ``signalled`` (the loop then stops cleanly and saves) instead of
    killing the process; returns the previous handlers. Only the main thread may install handlers: elsewhere nothing."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, lambda signum, frame: signalled.append(signal.Signals(signum).name))
            for sig in (signal.SIGTERM, signal.SIGINT)}


def _accelerator(device: str, precision: str):
    """An Accelerator on ``device`` ("auto": CUDA when there is one) with ``precision`` ("fp32", "bf16", "fp16").

    Accelerate keeps one process-wide state; a notebook or test that asks for another precision than
    the previous run resets it (launched multi-process runs always ask for the same one).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mp = {"fp32": "no", "no": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
    cpu = device == "cpu" or not torch.cuda.is_available()
    state = AcceleratorState._shared_state
    have = getattr(state.get("device"), "type", None)
    if state and (state.get("_mixed_precision", mp) != mp or (have is not None and (have == "cpu") != cpu)):
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=cpu, mixed_precision=mp)


def process_cpu_time() -> float:
    """CPU seconds of this process and of its finished children (the C compiler that torch.compile runs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def compiled_for_training(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile(model)`` with inductor's compile workers kept in this process (``compile_threads = 1``):
    a worker pool would spend CPU that neither a CPU-time budget nor the other job on a 2-core machine sees.
    The compiled module shares the parameters; attribute access falls through to ``model``."""
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = 1
    return torch.compile(model)


def _to(batch, device, channels_last: bool):
    if torch.is_tensor(batch):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device, channels_last) for k, v in batch.items()}
    return batch


class Harness:
    """Runs ``step_fn`` under one schedule, stop rule, device, precision, log and resume policy.

    ``optimizers`` is one optimizer or an ordered {name: optimizer}; every parameter group's ``lr`` at
    construction is its peak (``base_lr``). ``step_fn(model, batch, step)`` returns ``(loss, logs)``:
    ``loss`` a tensor (the one optimizer steps on it), a {name: tensor or None} (each named optimizer
    steps on its loss, in order; None skips it) or None (``step_fn`` stepped itself); ``logs`` a dict of
    numbers, reduced over the ``log_every`` steps by ``reduce`` ("last", "mean", "sum" or an EMA
    factor β: v ← β·v + (1−β)·x over the whole run).
    """

    def __init__(self, model: torch.nn.Module, optimizers: Optimizers, *, steps: int, warmup: int = 0,
                 max_minutes: float = 0.0, schedule: str = "steps", min_lr_ratio: float = 0.1,
                 clock: str = "wall", max_wall_minutes: float = 0.0, time_label: str | None = None,
                 clip: float = 0.0, run_dir: str | Path | None = None, resume: bool = False, save_every: int = 0,
                 log_every: int = 50, reduce: str | float = "last", row_fn: Callable[[dict], dict] | None = None,
                 print_logs: bool = False, on_log: Callable[[dict], None] | None = None,
                 evaluate: Callable[[torch.nn.Module], dict] | None = None, eval_every: int = 0,
                 final_eval: bool = True, device: str = "auto", precision: str = "fp32",
                 channels_last: bool = False, threads: int | None = None, stop_after: int | None = None,
                 generators: Mapping[str, torch.Generator] | None = None,
                 rngs: Mapping[str, random.Random] | None = None, progress: bool = False, desc: str = "train",
                 trainable_only: bool = False, on_save: Callable[[int], None] | None = None,
                 stop_on_signal: bool = False, compile: bool = False):
        if schedule not in ("steps", "progress", "time"):
            raise ValueError(f"schedule must be 'steps', 'progress' or 'time', got {schedule!r}")
        if threads:
            torch.set_num_threads(threads)
        self.steps, self.warmup, self.schedule, self.min_lr_ratio = steps, warmup, schedule, min_lr_ratio
        self.budget_s, self.wall_cap_s = 60 * max_minutes, 60 * max_wall_minutes
        self.clock = process_cpu_time if clock == "cpu" else time.time
        self.time_label = time_label or ("cpu budget" if clock == "cpu" else "wall time")
        self.clip, self.save_every, self.log_every, self.eval_every = clip, save_every, log_every, eval_every
        self.reduce, self.row_fn, self.print_logs, self.on_log = reduce, row_fn, print_logs, on_log
        self.evaluate, self.final_eval, self.stop_after = evaluate, final_eval, stop_after
        self.generators, self.rngs = dict(generators or {}), dict(rngs or {})
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.log = RunLog(self.run_dir) if self.run_dir is not None else None
        self.resume, self.progress, self.desc = resume, progress, desc
        self.channels_last = channels_last
        self.trainable_only, self.on_save, self.stop_on_signal = trainable_only, on_save, stop_on_signal
        self.accelerator = _accelerator(device, precision)
        self.device = self.accelerator.device
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opts = _as_dict(optimizers)
        for opt in opts.values():
            for g in opt.param_groups:
                g.setdefault("base_lr", g["lr"])
        prepared = self.accelerator.prepare(model, *opts.values())
        self.model, self.optimizers = prepared[0], dict(zip(opts, prepared[1:]))
        self.step_model = compiled_for_training(self.model) if compile else self.model   # what step_fn is given
        self.history: list[dict] = []
        self.evals: list[dict] = []
        self.reduced: dict = {}

    @property
    def raw(self) -> torch.nn.Module:
        """The model without Accelerate's distributed wrapper: its own methods, its state to save."""
        return self.accelerator.unwrap_model(self.model)

    def lr_scale(self, step: int, elapsed_s: float) -> float:
        if self.schedule == "steps":
            return lr_at(step, self.steps, 1.0, self.warmup, self.min_lr_ratio)
        by_time = elapsed_s / self.budget_s if self.budget_s else 0.0
        p = by_time if self.schedule == "time" else max(step / self.steps, by_time)
        return lr_factor(step, p, self.warmup, self.min_lr_ratio)

    def _update(self, opt, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        if self.clip:
            params = [p for g in opt.param_groups for p in g["params"]]
            self.accelerator.clip_grad_norm_(params, self.clip)
        opt.step()

    def _reduce(self, acc: dict, logs: dict, n: int) -> dict:
        for k, v in logs.items():
            v = float(v.detach()) if torch.is_tensor(v) else float(v)
            if isinstance(self.reduce, float):
                acc[k] = v if k not in acc else self.reduce * acc[k] + (1 - self.reduce) * v
            elif self.reduce in ("mean", "sum"):
                acc[k] = acc.get(k, 0.0) + v
            else:
                acc[k] = v
        return acc

    def _save(self, info: dict) -> None:
        if self.run_dir is not None and self.accelerator.is_main_process:
            save_state(self.run_dir, self.raw, self.optimizers, info, self.generators, self.rngs, self.trainable_only)
            if self.on_save:
                self.on_save(int(info["step"]))

    def _eval(self, step: int, wall: float) -> None:
        row = {"step": step, "wall_s": wall, **self.evaluate(self.raw)}
        self.evals.append(row)
        if self.log is not None:
            self.log.write("eval", row)

    def fit(self, step_fn: Callable[[torch.nn.Module, Any, int], tuple[Any, dict]],
            batches: Callable[[int], Any] | None = None) -> dict:
        """Train until ``steps``, the time budget or ``stop_after``, drawing ``batches(step)`` (moved to the device);
        returns steps, wall and CPU time, why it stopped and the step it resumed from. The logged rows stay in
        ``self.history`` / ``self.evals`` (and the run folder's logs)."""
        acc = self.accelerator
        start, before, cpu_before = 0, 0.0, 0.0
        if self.log is not None:
            if self.resume and (self.run_dir / STATE_DIR / "state.json").exists():
                meta = load_state(self.run_dir, self.raw, self.optimizers, self.generators, self.rngs,
                                  self.trainable_only)
                start, before = int(meta["step"]), float(meta["wall_time_s"])
                cpu_before = float(meta.get("cpu_time_s", 0.0))
                self.log.truncate_after(start)
                print(f"resumed from {self.run_dir / STATE_DIR} at step {start}")
            else:
                self.log.clear()
        t0, c0 = time.time(), process_cpu_time()
        wall = lambda: before + time.time() - t0                                   # noqa: E731
        cpu = lambda: cpu_before + process_cpu_time() - c0                         # noqa: E731
        elapsed = lambda: cpu() if self.clock is process_cpu_time else wall()      # noqa: E731
        step, stopped_by, logs, n = start, "steps", {}, 0
        bar = tqdm(total=self.steps, initial=start, desc=self.desc, mininterval=10,
                   disable=not self.progress or not acc.is_main_process)
        self.model.train()
        signalled: list[str] = []                  # SIGTERM/SIGINT with stop_on_signal: finish the step, save, stop
        old = _catch_signals(signalled) if self.stop_on_signal else {}
        try:
            while step < self.steps:
                if signalled:
                    stopped_by = f"signal {signalled[0]}"
                    break
                if self.budget_s and elapsed() >= self.budget_s:
                    stopped_by = self.time_label
                    break
                if self.wall_cap_s and wall() >= self.wall_cap_s:
                    stopped_by = "wall cap"
                    break
                if self.stop_after is not None and step >= self.stop_after:
                    stopped_by = "stop_after"
                    break
                scale = self.lr_scale(step, elapsed())
                for opt in self.optimizers.values():
                    for g in opt.param_groups:
                        g["lr"] = g["base_lr"] * scale
                batch = _to(batches(step), self.device, self.channels_last) if batches is not None else None
                with acc.autocast():
                    loss, step_logs = step_fn(self.step_model, batch, step)
                if torch.is_tensor(loss):
                    self._update(next(iter(self.optimizers.values())), loss)
                elif isinstance(loss, Mapping):
                    for name, part in loss.items():
                        if part is not None:
                            self._update(self.optimizers[name], part)
                step += 1
                n += 1
                bar.update(1)
                logs = self._reduce(logs, step_logs or {}, n)
                if self.log_every and (step % self.log_every == 0 or step == self.steps):
                    vals = {k: v / n for k, v in logs.items()} if self.reduce == "mean" else dict(logs)
                    row = {"step": step, "wall_s": wall(), "cpu_s": cpu(),
                           "lr": next(iter(self.optimizers.values())).param_groups[0]["lr"], **vals}
                    row = self.row_fn(row) if self.row_fn else row
                    self.history.append(row)
                    if self.log is not None and acc.is_main_process:
                        self.log.write("train", row)
                    if self.print_logs and acc.is_main_process:
                        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
                              flush=True)
                    if self.on_log:
                        self.on_log(row)
                    bar.set_postfix(loss=f"{row.get('loss', float('nan')):.4f}")
                    if not isinstance(self.reduce, float):
                        logs, n = {}, 0
                if self.evaluate and self.eval_every and (step % self.eval_every == 0 or step == self.steps) \
                        and acc.is_main_process:
                    self._eval(step, wall())
                if self.save_every and step % self.save_every == 0:
                    self._save({"step": step, "wall_time_s": wall(), "cpu_time_s": cpu()})
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        bar.close()
        self.reduced = logs                        # the reduced logs since the last row (the running EMA for β)
        w, c = wall(), cpu()
        if self.save_every:
            self._save({"step": step, "wall_time_s": w, "cpu_time_s": c})
        evaluated = self.evals and self.evals[-1]["step"] == step
        if self.log is not None and not evaluated:
            rows = self.log.rows("eval")
            evaluated = bool(rows) and int(rows[-1]["step"]) == step
        if self.evaluate and self.final_eval and not evaluated \
                and not stopped_by.startswith(("stop_after", "signal")) \
                and acc.is_main_process:                                     # an interruption logs nothing extra
            self._eval(step, w)
        self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False).eval()   # its own forward again
        return {"steps": step, "wall_time_s": w, "cpu_time_s": c, "stopped_by": stopped_by, "resumed_from": start}


# ---- the end of a job: checkpoint + model card (+ tokenizer prior) ------------------------------
def save_with_card(obj, out: str | Path, name: str, *, prior: bool = False, **card) -> Path:
    """``obj.save_pretrained(out)``, then :func:`museumtok.cards.write_model_card` with ``card``'s fields and,
    for a tokenizer (``prior=True``), its entropy-coding prior (``prior.json``, code counts on artworks-train)."""
    from ..cards import write_model_card

    out = Path(out)
    obj.save_pretrained(out)
    write_model_card(out, name, **card)
    if prior:
        from ..tokenizers.prior import save_tokenizer_prior

        save_tokenizer_prior(obj, out)
    return out


def resolve_checkpoint(name_or_path: str) -> Path:
    """A checkpoint folder from a path, a folder under ``data/checkpoints`` or a registry name."""
    p = Path(name_or_path)
    if (p / "config.json").is_file():
        return p
    from ..paths import CHECKPOINT_DIR

    if (CHECKPOINT_DIR / name_or_path / "config.json").is_file():
        return CHECKPOINT_DIR / name_or_path
    from .. import registry

    return registry.get(name_or_path).checkpoint_path
