"""Run the notebooks headless and build the static HTML book (``make book``).

``python -m museumtok.book [--fast] [--out build/book] [NAME ...]`` executes every ``notebooks/*.py``
(jupytext py:percent) in a kernel of this interpreter, the way "Run All" does in JupyterLab, then
writes one HTML page per notebook with its outputs and an ``index.html`` with the table of contents
and each notebook's run time. The book reads nothing from the network: plotly figures are drawn by
one local copy of plotly.js (``_static/plotly.min.js``, taken from the installed plotly), formulas by
a local MathJax 2.7 (``_static/mathjax``, from the ``jupyter-server-mathjax`` package), and images
are embedded in the pages. Sliders cannot move in a static page: each interactive widget is shown
with the output of its first call and a line naming its controls (open the notebook in JupyterLab,
``make lab``, to move them).

Why a client of our own (:class:`HeadlessClient`): when a cell opens ipywidgets and their callback
displays output while it runs, nbclient (through jupyter_client and pyzmq's asyncio sockets) can miss
the wake-up for the kernel's ``execute_reply``. The kernel is idle, the reply sits in the client's
socket, and ``shell_channel.get_msg(timeout=None)`` waits forever (jupyter/nbclient#312; seen here on
04_2 in workshop mode: ``py-spy dump`` shows both processes idle in ``epoll``). A plain ``jupyter
nbconvert --execute`` can hang the same way. :class:`HeadlessClient` waits in short slices instead, so
a missed wake-up costs at most ``POLL_S`` seconds; it counts how often a reply was found only by such
a re-poll after the kernel had gone idle (``rescued``).
"""
from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

from .paths import REPO_ROOT

NB_DIR = REPO_ROOT / "notebooks"
POLL_S = 2.0                      # longest single wait on a kernel channel before polling again
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PLOTLY = "application/vnd.plotly.v1+json"


def notebooks(names: list[str] | None = None) -> list[Path]:
    """The jupytext py:percent notebooks, sorted; ``names`` (stems or prefixes such as ``04_2``) selects."""
    found = sorted(p for p in NB_DIR.glob("*.py") if p.read_text(encoding="utf-8").startswith("# ---\n# jupyter:"))
    if names:
        found = [p for p in found if any(p.stem == n or p.stem.startswith(n) for n in names)]
    return found


# ---- execution ----------------------------------------------------------------------------------------------------
def _client_class():
    from nbclient import NotebookClient

    class HeadlessClient(NotebookClient):
        """nbclient's NotebookClient, waiting on the kernel's channels in slices of ``POLL_S`` seconds."""

        rescued = 0

        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            for name in ("shell_channel", "iopub_channel"):
                self._slice_waits(getattr(kc, name), name)
            return kc

        def _slice_waits(self, channel, name):
            get_msg = channel.get_msg
            client = self

            async def sliced(timeout=None):
                deadline = None if timeout is None else time.monotonic() + timeout
                idle_slices = 0        # whole slices that passed with the kernel already idle and no message
                while True:
                    left = POLL_S if deadline is None else min(POLL_S, max(0.0, deadline - time.monotonic()))
                    try:
                        msg = await get_msg(timeout=left)
                    except Empty:
                        if deadline is not None and time.monotonic() >= deadline:
                            raise
                        idle_slices += getattr(client, "_kernel_idle", False)
                        continue
                    if idle_slices and name == "shell_channel":
                        client.rescued += 1    # the reply was there, but only a fresh poll saw it
                    if name == "iopub_channel" and msg.get("msg_type") == "status":
                        client._kernel_idle = msg["content"].get("execution_state") == "idle"
                    return msg

            channel.get_msg = sliced

    return HeadlessClient


@contextlib.contextmanager
def kernel_of_this_interpreter():
    """A kernelspec ``museumtok-book`` pointing at ``sys.executable`` (so notebooks import this
    checkout's package with this environment's libraries), on a temporary ``JUPYTER_PATH``."""
    with tempfile.TemporaryDirectory() as d:
        spec = Path(d) / "kernels" / "museumtok-book"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "museumtok", "language": "python"}))
        with _env(JUPYTER_PATH=d + (os.pathsep + os.environ["JUPYTER_PATH"] if os.environ.get("JUPYTER_PATH") else "")):
            yield "museumtok-book"


@contextlib.contextmanager
def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class Run:
    path: Path
    nb: object                      # the executed nbformat notebook
    seconds: float
    error: str | None = None        # the failing cell's error, if any
    rescued: int = 0                # replies found only by a re-poll (see the module docstring)
    extra_env: dict = field(default_factory=dict)


def execute(py: Path, fast: bool, kernel_name: str, timeout: int = 900, env: dict | None = None) -> Run:
    """Execute one py:percent notebook top to bottom in ``notebooks/`` ("Run All"), headless."""
    import jupytext
    from nbclient.exceptions import CellExecutionError

    nb = jupytext.read(py)
    pythonpath = str(REPO_ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    values = {"MUSEUMTOK_FAST": "1" if fast else "0", "PYTHONPATH": pythonpath, **(env or {})}
    client = _client_class()(nb, kernel_name=kernel_name, timeout=timeout,
                             resources={"metadata": {"path": str(NB_DIR)}})
    error = None
    t0 = time.time()
    with _env(**values):
        try:
            client.execute()
        except CellExecutionError as e:
            error = str(e)
        except Exception as e:                                            # timeouts, dead kernels
            error = f"{type(e).__name__}: {e}"
    return Run(py, nb, time.time() - t0, error, client.rescued, env or {})


# ---- static pages -------------------------------------------------------------------------------------------------
def _widget_state(nb) -> dict:
    return nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def _controls_and_outputs(model_id: str, state: dict, seen=None) -> tuple[list[str], list, list[str]]:
    """Under one widget: its controls ('description = value'), the outputs it captured, and its
    texts (labels, HTML, progress bars such as tqdm's)."""
    seen = seen if seen is not None else set()
    if model_id in seen or model_id not in state:
        return [], [], []
    seen.add(model_id)
    m = state[model_id]
    name, s = m.get("model_name", ""), m.get("state", {})
    controls, outputs, texts = [], [], []
    if name == "OutputModel":
        outputs += s.get("outputs", [])
    elif name in ("HTMLModel", "LabelModel", "HTMLMathModel"):
        texts.append(re.sub(r"<[^>]+>", "", html.unescape(str(s.get("value", "")))).strip())
    elif name in ("FloatProgressModel", "IntProgressModel"):
        texts.append(f"[{s.get('value', 0)}/{s.get('max', 100)}]")
    elif "_options_labels" in s or name.endswith(("SliderModel", "TextModel", "CheckboxModel")):
        value = s.get("value")
        if "_options_labels" in s and isinstance(s.get("index"), int):
            value = s["_options_labels"][s["index"]]
        elif "_options_labels" in s and isinstance(s.get("index"), (list, tuple)):
            value = ", ".join(s["_options_labels"][i] for i in s["index"])
        rng = f" ({s.get('min')} to {s.get('max')})" if "min" in s and "max" in s and "Log" not in name else ""
        controls.append(f"{s.get('description') or '?'} = {value}{rng}")
    for child in s.get("children", []):
        c, o, t = _controls_and_outputs(str(child).removeprefix("IPY_MODEL_"), state, seen)
        controls += c
        outputs += o
        texts += t
    return controls, outputs, texts


def static_outputs(nb) -> int:
    """Make every output readable without a kernel or a CDN, in place; returns the widgets replaced.

    * a widget view becomes its captured output (the first call of the callback) and a note naming
      its controls; the widget state is dropped from the metadata;
    * a plotly figure (its JSON mimetype) gets a ``text/html`` drawn with the page's local plotly.js.
    """
    import nbformat
    import plotly.io as pio

    state = _widget_state(nb)
    replaced = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        new = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                controls, captured, texts = _controls_and_outputs(data[WIDGET_VIEW]["model_id"], state)
                if controls:
                    note = ("<p class='mt-widget-note'>▶ interactive in JupyterLab (<code>make lab</code>): "
                            + html.escape(", ".join(controls)) + ". Shown: its first call.</p>")
                    new.append(nbformat.v4.new_output("display_data", data={"text/html": note}))
                elif texts:
                    new.append(nbformat.v4.new_output("stream", name="stdout", text=" ".join(t for t in texts if t) + "\n"))
                new += [nbformat.from_dict(o) for o in captured]
                replaced += 1
            else:
                new.append(out)
        for out in new:
            data = out.get("data", {})
            if PLOTLY in data:
                fig = data[PLOTLY]
                data["text/html"] = pio.to_html(fig, include_plotlyjs=False, full_html=False,
                                                config={"responsive": True})
                data.pop("text/plain", None)
        cell.outputs = new
    nb.metadata.pop("widgets", None)
    return replaced


def _exporter():
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", mathjax_url="_static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe",
                        require_js_url="", mermaid_js_url="", mermaid_layout_elk_js_url="")


def _page_html(body: str, title: str, prev: tuple[str, str] | None, nxt: tuple[str, str] | None, seconds: float,
               fast: bool) -> str:
    body = body.replace('<script src=""></script>', "")
    nav = ["<a href='index.html'>contents</a>"]
    if prev:
        nav.insert(0, f"<a href='{prev[0]}'>← {html.escape(prev[1])}</a>")
    if nxt:
        nav.append(f"<a href='{nxt[0]}'>{html.escape(nxt[1])} →</a>")
    bar = (f"<nav class='mt-nav'>{' · '.join(nav)} <span class='mt-time'>run in {seconds:.0f} s"
           f"{' (fast settings)' if fast else ''}</span></nav>")
    head = ("<script src='_static/plotly.min.js'></script>\n"
            "<style>.mt-nav{font-family:sans-serif;padding:8px 16px;background:#f3f3f3;border-bottom:1px solid #ddd}"
            ".mt-nav a{margin-right:8px}.mt-time{float:right;color:#666}.mt-widget-note{color:#555;font-style:italic}"
            "</style>\n")
    body = body.replace("</head>", head + "</head>", 1)
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + bar, body, count=1)


def _title(nb, stem: str) -> str:
    for c in nb.cells:
        if c.cell_type == "markdown" and c.source.startswith("# "):
            return c.source.splitlines()[0][2:].strip()
    return stem


def _copy_static(out: Path) -> None:
    import jupyter_server_mathjax
    from plotly.offline import get_plotlyjs

    static = out / "_static"
    static.mkdir(parents=True, exist_ok=True)
    (static / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
    mj = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (static / "mathjax" / "MathJax.js").exists():
        shutil.copytree(mj, static / "mathjax", dirs_exist_ok=True)


def write_index(out: Path, rows: list[dict], fast: bool) -> Path:
    items = "\n".join(
        f"<tr><td><a href='{r['page']}'>{html.escape(r['stem'])}</a></td><td>{html.escape(r['title'])}</td>"
        f"<td style='text-align:right'>{r['seconds']:.0f} s</td><td>{'' if not r['error'] else 'FAILED'}</td></tr>"
        for r in rows)
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>museumtok: the notebooks</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}td{{padding:4px 10px}}
tr:nth-child(even){{background:#f6f6f6}}</style></head>
<body><h1>museumtok: the notebooks</h1>
<p>One notebook per chapter of the review, executed {'with the small test settings (MUSEUMTOK_FAST=1)' if fast else
'in workshop mode'} on {time.strftime('%Y-%m-%d')}; the times are each notebook's "Run All" on the machine that built
this book. Sliders are shown at their first value: open the notebooks in JupyterLab (<code>make lab</code>) to move them.
Everything here works offline.</p>
<h2>Contents</h2>
<table><tr><th>notebook</th><th>title</th><th>run time</th><th></th></tr>
{items}
</table></body></html>
"""
    (out / "index.html").write_text(text, encoding="utf-8")
    return out / "index.html"


def build_book(out: Path, fast: bool = False, names: list[str] | None = None, timeout: int = 900,
               log=print, render_only: bool = False) -> list[dict]:
    """Execute the notebooks (all, or ``names``) and write ``out/index.html`` + one page each.
    Returns one row per notebook: stem, title, page, seconds, error, rescued."""
    import nbformat

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _copy_static(out)
    exporter = _exporter()
    paths = notebooks(names)
    runs = []
    if render_only:     # pages again from the executed notebooks of an earlier build (no kernel)
        old = {r["stem"]: r for r in json.loads((out / "timings.json").read_text())["notebooks"]}
        for p in paths:
            if p.stem in old and (out / f"{p.stem}.ipynb").exists():
                o = old[p.stem]
                runs.append(Run(p, nbformat.read(out / f"{p.stem}.ipynb", as_version=4), o["seconds"], o["error"],
                                o.get("rescued", 0)))
        paths = []
    with kernel_of_this_interpreter() as kernel:
        for p in paths:
            log(f"{p.stem}: running{' (fast)' if fast else ''} …")
            r = execute(p, fast, kernel, timeout)
            log(f"{p.stem}: {r.seconds:.1f} s" + (f", FAILED: {r.error.splitlines()[-1] if r.error else ''}" if r.error else "")
                + (f" ({r.rescued} missed execute_reply wake-ups recovered)" if r.rescued else ""))
            runs.append(r)
            nbformat.write(r.nb, out / f"{p.stem}.ipynb")
    rows = []
    for i, r in enumerate(runs):
        stem = r.path.stem
        static_outputs(r.nb)
        body, _ = exporter.from_notebook_node(r.nb, resources={"metadata": {"name": stem}})
        prev = (f"{runs[i - 1].path.stem}.html", runs[i - 1].path.stem) if i else None
        nxt = (f"{runs[i + 1].path.stem}.html", runs[i + 1].path.stem) if i + 1 < len(runs) else None
        (out / f"{stem}.html").write_text(_page_html(body, _title(r.nb, stem), prev, nxt, r.seconds, fast), encoding="utf-8")
        rows.append({"stem": stem, "title": _title(r.nb, stem), "page": f"{stem}.html", "seconds": round(r.seconds, 1),
                     "error": r.error, "rescued": r.rescued})
    if names:   # a partial build keeps the other rows of an earlier one
        old = {}
        with contextlib.suppress(OSError, ValueError):
            old = {r["stem"]: r for r in json.loads((out / "timings.json").read_text())["notebooks"]}
        old.update({r["stem"]: r for r in rows})
        all_rows = [old[k] for k in sorted(old)]
    else:
        all_rows = rows
    (out / "timings.json").write_text(json.dumps({"fast": fast, "notebooks": all_rows}, indent=1), encoding="utf-8")
    write_index(out, all_rows, fast)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m museumtok.book", description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="notebooks to run (stems or prefixes, e.g. 04_2); default: all")
    ap.add_argument("--out", default=str(REPO_ROOT / "build" / "book"), help="output folder (default build/book)")
    ap.add_argument("--fast", action="store_true", help="small settings (MUSEUMTOK_FAST=1), as the tests use")
    ap.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    ap.add_argument("--render-only", action="store_true", help="rewrite the pages from the executed notebooks of an "
                    "earlier build in --out, without running anything")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.render_only:
        args.fast = json.loads((Path(args.out) / "timings.json").read_text())["fast"]
    rows = build_book(Path(args.out), fast=args.fast, names=args.names or None, timeout=args.timeout,
                      render_only=args.render_only)
    failed = [r["stem"] for r in rows if r["error"]]
    print(f"book: {len(rows)} notebooks in {time.time() - t0:.0f} s -> {Path(args.out) / 'index.html'}")
    if failed:
        print("FAILED:", ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
