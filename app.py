"""museumtok's Gradio app for the board: one artwork across every tab, big pictures, plain words.

Layout and event wiring only; every callback lives in ``museumtok.app`` (unit-tested), every text in
``museumtok.app.i18n`` (English and Vietnamese, switched in the header).

    .venv/bin/python app.py                       # http://127.0.0.1:7860, this machine only
    .venv/bin/python app.py --share               # a public gradio.live link (explicit)
    .venv/bin/python app.py --auth user:password  # ask for a password

    header: language · gallery | upload (the current artwork) | preview · tokenizer · M
       └─► Tokenize (presenter view) · Inpaint (draw to hide) · Codecs · Context budget · Chat (the guide)
"""
from __future__ import annotations

import argparse
import os
import time

import gradio as gr

from museumtok.app import attention as att
from museumtok.app import budget as bud
from museumtok.app import chat as ch
from museumtok.app import codebook as cbh
from museumtok.app import compress as cc
from museumtok.app import header as hd
from museumtok.app import inpaint as ip
from museumtok.app import tokenize as tk
from museumtok.app.i18n import LANG_NAMES, norm_lang, t
from museumtok.paths import cache_dir, image_roots, museumtok_command

#: the museum's calm look: stone greys, a warm accent, a serif face (local fonts only: nothing is fetched)
THEME = gr.themes.Soft(primary_hue="amber", secondary_hue="stone", neutral_hue="stone",
                       font=[gr.themes.Font("Georgia"), gr.themes.Font("Times New Roman"), "serif"],
                       font_mono=["ui-monospace", "monospace"])
CSS = """
#headline, #codec-headline {font-size: 1.35em; line-height: 1.5}
#current-image img {object-fit: contain}
.presenter img {image-rendering: pixelated}
"""
LANG_CHOICES = [LANG_NAMES["en"], LANG_NAMES["vi"]]
DETECT_LANG_JS = "() => (navigator.language || 'en').toLowerCase().startsWith('vi') ? 'Tiếng Việt' : 'English'"
SAMPLE_QUESTIONS = ["What colours dominate this painting?", "Who painted this?", "Where does the light fall?",
                    "Describe what is in the picture.", "How much is it worth?",
                    "Màu nào chiếm ưu thế trong bức tranh này?", "Ai đã vẽ bức tranh này?"]


class Texts:
    """Every translatable component and the i18n keys of its texts, so the language switch relabels them all."""

    def __init__(self):
        self.items: list[tuple[gr.components.Component, dict[str, str]]] = []

    def __call__(self, component, **keys):
        self.items.append((component, keys))
        return component

    def relabel(self, lang):
        def text(key):  # a key, or a radio's [(key, value), …] choices
            return [(t(k, lang), v) for k, v in key] if isinstance(key, list) else t(key, lang)
        return [gr.update(**{attr: text(key) for attr, key in keys.items()}) for _, keys in self.items]


def header(T: Texts):
    with gr.Row():
        with gr.Column(scale=5):
            T(gr.Markdown(t("title")), value="title")
            T(gr.Markdown(t("intro")), value="intro")
        lang = T(gr.Radio(LANG_CHOICES, value=LANG_CHOICES[0], label=t("language"), elem_id="lang", scale=1),
                 label="language")
    items = hd.catalog_gallery()
    tokenizers = hd.tokenizer_choices()
    first = ch.default_chat_tokenizer() or (tokenizers[-1] if tokenizers else None)
    m_values, m_default = hd.m_choices(first) if first else ([], None)
    m_range = hd.m_slider_range(first) if first else None
    with gr.Row(equal_height=True):
        with gr.Column(scale=4):
            gr.Markdown(hd.catalog_hint(items), visible=not items, elem_id="catalog-hint")
            gallery = T(gr.Gallery(value=items, label=hd.gallery_label(items), columns=8, height=190,
                                   allow_preview=False, elem_id="gallery"), label="gallery")
        with gr.Column(scale=2):
            upload = T(gr.File(label=t("upload"), file_types=["image", ".tif", ".tiff"], type="filepath",
                               elem_id="upload", height=120), label="upload")
            examples = hd.sample_artworks(4)
            if examples:
                gr.Examples([[p] for p in examples], inputs=[upload], label="Samples · Tác phẩm mẫu",
                            example_labels=[hd.current_artwork_title(p) for p in examples])
        with gr.Column(scale=2):
            current_img = T(gr.Image(label=t("current"), type="pil", interactive=False, height=190,
                                     elem_id="current-image"), label="current")
            current_md = gr.Markdown(t("current_none"), elem_id="current-caption")
    with gr.Row():
        tokenizer = T(gr.Dropdown(tokenizers, value=first, label=t("tokenizer"), elem_id="tokenizer"), label="tokenizer")
        m = T(gr.Dropdown(m_values, value=m_default, label=t("m"), elem_id="m", visible=m_range is None), label="m")
        m_slider = T(gr.Slider(*(m_range or (1, 2)), value=m_default or 1, step=1, label=t("m_slider"),
                               elem_id="m-slider", visible=m_range is not None), label="m_slider")
    return lang, gallery, upload, current_img, current_md, tokenizer, m, m_slider


def tokenize_tab(T, upload, tokenizer, m, lang):
    headline = gr.Markdown(elem_id="headline")
    with gr.Row(equal_height=True):
        original = T(gr.Image(label=t("original_plain"), type="pil", interactive=False, height=520,
                              elem_classes="presenter", elem_id="original"), label="original_plain")
        recon = T(gr.Image(label=t("recon"), type="pil", interactive=False, height=520, elem_classes="presenter",
                           elem_id="reconstruction"), label="recon")
    with gr.Row(equal_height=True):
        jpeg = T(gr.Image(label=t("jpeg_same"), type="pil", interactive=False, height=280, elem_classes="presenter"),
                 label="jpeg_same")
        webp = T(gr.Image(label=t("webp_same"), type="pil", interactive=False, height=280, elem_classes="presenter"),
                 label="webp_same")
    run = T(gr.Button(t("tokenize_run"), variant="primary", elem_id="run"), value="tokenize_run")
    with T(gr.Accordion(t("details"), open=False, elem_id="details"), label="details"):
        notes = gr.Markdown(elem_id="notes")
        metrics = T(gr.Dataframe(headers=tk.METRIC_COLUMNS, label=t("metrics"), interactive=False,
                                 elem_id="metrics", wrap=True), label="metrics")
        with gr.Row():
            err = T(gr.Image(label=t("error_map"), type="pil", interactive=False, height=300), label="error_map")
            grid = T(gr.Plot(label=t("grid"), elem_id="token-grid"), label="grid")
        with gr.Row():
            context = T(gr.Number(4096, label=t("context"), precision=0), label="context")
            text_tokens = T(gr.Number(200, label=t("text_tokens"), precision=0), label="text_tokens")
        budget = T(gr.Plot(label=t("budget_plot")), label="budget_plot")
        with T(gr.Accordion(t("health"), open=False), label="health"):
            health_run = T(gr.Button(t("health_run"), elem_id="codebook-health"), value="health_run")
            health_md = gr.Markdown()
            health_plot = gr.Plot()
        with T(gr.Accordion(t("attention"), open=False), label="attention"):
            att_token = T(gr.Slider(0, 63, value=0, step=1, label=t("att_token"), elem_id="att-token"), label="att_token")
            att_run = T(gr.Button(t("att_run"), elem_id="token-attention"), value="att_run")
            att_md = gr.Markdown()
            with gr.Row():
                att_overlay = gr.Image(type="pil", interactive=False)
                att_mosaic = gr.Image(type="pil", interactive=False)

    def run_tokenize(source, name, M, ctx, txt, lg="English", progress=gr.Progress()):
        lg = norm_lang(lg)
        r = tk.tokenize_image(source, name, M, ctx or 4096, txt or 0, lang=lg,
                              progress=lambda f, d: progress(f, desc=d))
        if r.error:
            return (f"**⚠ {r.error}**",) + (None,) * 8 + (tk.notes_markdown(r),)
        S = r.original.width
        return (r.headline, gr.update(value=r.shown["original"], label=t("original", lg, S=S, k=r.scale)),
                r.shown["recon"], r.shown.get("jpeg"), r.shown.get("webp"), r.metrics_rows(), r.error_image, r.grid,
                r.budget, tk.notes_markdown(r))

    outputs = [headline, original, recon, jpeg, webp, metrics, err, grid, budget, notes]
    inputs = [upload, tokenizer, m, context, text_tokens, lang]
    run.click(run_tokenize, inputs, outputs, api_name="tokenize")

    def run_health(source, name, M):
        r = cbh.codebook_health(source, name, M)
        return r.figure, cbh.health_markdown(r)

    health_run.click(run_health, [upload, tokenizer, m], [health_plot, health_md], api_name="codebook_health")

    def run_attention(source, name, M, token):
        r = att.token_attention(source, name, M, token)
        return r.overlay, r.mosaic, r.message

    att_run.click(run_attention, [upload, tokenizer, m, att_token], [att_overlay, att_mosaic, att_md],
                  api_name="token_attention")
    return run_tokenize, inputs, outputs


def inpaint_tab(T, upload, lang):
    """§4.6: the presenter draws over the part to hide; MaskGIT fills the tokens in, step by step."""
    T(gr.Markdown(t("inpaint_intro")), value="inpaint_intro")
    with gr.Row():
        with gr.Column(scale=3):
            canvas = T(gr.ImageEditor(label=t("inpaint_canvas"), type="numpy", sources=(), transforms=(),
                                      brush=gr.Brush(colors=["#d9480f"], default_size=28, color_mode="fixed"),
                                      eraser=gr.Eraser(default_size=28), layers=False, height=560,
                                      elem_id="inpaint-canvas"), label="inpaint_canvas")
            with gr.Row():
                steps = T(gr.Slider(1, 16, value=8, step=1, label=t("inpaint_steps")), label="inpaint_steps")
                temperature = T(gr.Slider(0.1, 3.0, value=1.0, step=0.1, label=t("inpaint_tau")), label="inpaint_tau")
                seed = T(gr.Number(0, label=t("inpaint_seed"), precision=0), label="inpaint_seed")
            dec_keys = [("inpaint_dec_paper", "paper"), ("inpaint_dec_review", "review")]   # §4.6: paper vs review
            decoding = T(gr.Radio([(t(k), v) for k, v in dec_keys], value="paper", label=t("inpaint_decoding"),
                                  elem_id="inpaint-decoding"), label="inpaint_decoding", choices=dec_keys)
            run = T(gr.Button(t("inpaint_run"), variant="primary", elem_id="inpaint-run"), value="inpaint_run")
        with gr.Column(scale=3):
            message = gr.Markdown(elem_id="inpaint-message")
            live = T(gr.Image(label=t("inpaint_result"), type="pil", interactive=False, height=520,
                              elem_classes="presenter", elem_id="inpaint-live"), label="inpaint_result")
    with gr.Row():
        masked = T(gr.Image(label=t("inpaint_masked"), type="pil", interactive=False, height=220,
                            elem_classes="presenter"), label="inpaint_masked")
        frames = T(gr.Gallery(label=t("inpaint_frames"), columns=8, height=220, elem_id="inpaint-frames"),
                   label="inpaint_frames")
    # the fractions-of-the-image form, for API clients and tests (the page uses the drawing)
    with gr.Group(visible=False):
        x0, y0, x1, y1 = (gr.Number(v) for v in (0.375, 0.25, 0.625, 0.875))
        api_run = gr.Button()

    def on_canvas(source, lg="English"):
        img, msg = ip.canvas_for(source, norm_lang(lg))
        return ({"background": img, "layers": [], "composite": img} if img is not None else None), msg

    def on_run(source, editor, T_, tau, s, lg="English", dec="paper"):
        lg = norm_lang(lg)
        r = ip.inpaint_drawn(source, editor, T_, tau, s or 0, lang=lg, decoding=dec or "paper")
        if r.error:
            yield f"**⚠ {r.error}**", None, None, []
            return
        yield r.message, r.masked, r.masked, []
        for k, frame in enumerate(r.steps, 1):           # play the decoding, one parallel step at a time
            time.sleep(0.35)
            yield f"{t('inpaint_step', lg, t=k, T=len(r.steps))} · {r.message}", frame, r.masked, r.steps[:k]
        yield r.message, r.result, r.masked, r.steps

    run.click(on_run, [upload, canvas, steps, temperature, seed, lang, decoding], [message, live, masked, frames],
              api_name="inpaint_drawn")

    def on_api(source, a, b, c, d, T_, tau, s, dec="paper"):   # decoding last and optional: old clients work
        r = ip.inpaint_image(source, a, b, c, d, T_, tau, s or 0, decoding=dec or "paper")
        if r.error:
            return f"**{r.error}**", None, None, None, []
        return r.message, r.original, r.masked, r.result, r.steps

    api_out = [gr.Markdown(visible=False), gr.Image(visible=False), gr.Image(visible=False),
               gr.Image(visible=False), gr.Gallery(visible=False)]
    api_run.click(on_api, [upload, x0, y0, x1, y1, steps, temperature, seed, decoding], api_out, api_name="inpaint")
    return on_canvas, canvas, message


def codec_tab(T, upload, lang):
    choices = cc.codec_choices()
    T(gr.Markdown(t("codec_intro")), value="codec_intro")
    with gr.Row():
        codec = T(gr.Dropdown(choices, value=choices[-1] if choices else None, label=t("codec"), elem_id="codec"),
                  label="codec")
        size = T(gr.Dropdown(list(cc.CODEC_SIZES), value=512, label=t("codec_size")), label="codec_size")
        run = T(gr.Button(t("codec_run"), variant="primary", elem_id="codec-run"), value="codec_run")
    headline = gr.Markdown(elem_id="codec-headline")
    with gr.Row(equal_height=True):
        original = T(gr.Image(label=t("codec_original"), type="pil", interactive=False, height=460),
                     label="codec_original")
        recon = T(gr.Image(label=t("codec_recon"), type="pil", interactive=False, height=460), label="codec_recon")
    with gr.Row(equal_height=True):
        jpeg = T(gr.Image(label=t("jpeg_same"), type="pil", interactive=False, height=300), label="jpeg_same")
        webp = T(gr.Image(label=t("webp_same"), type="pil", interactive=False, height=300), label="webp_same")
        bmap = T(gr.Image(label=t("codec_bpp"), type="pil", interactive=False, height=300), label="codec_bpp")
    with T(gr.Accordion(t("details_codec"), open=False), label="details_codec"):
        notes = gr.Markdown()
        metrics = T(gr.Dataframe(headers=tk.METRIC_COLUMNS, label=t("metrics"), interactive=False, wrap=True),
                    label="metrics")

    def run_codec(source, name, px, lg="English", progress=gr.Progress()):
        lg = norm_lang(lg)
        r = cc.compress_image(source, name, px or 512, lang=lg, progress=lambda f, d: progress(f, desc=d))
        if r.error:
            return (cc.codec_notes_markdown(r), None, None, None, None, None, None, "")
        return (cc.codec_notes_markdown(r), r.original, r.reconstruction, r.bpp_map,
                r.metrics_rows(tk.METRIC_COLUMNS), r.comparisons.get("jpeg"), r.comparisons.get("webp"), r.headline)

    run.click(run_codec, [upload, codec, size, lang], [notes, original, recon, bmap, metrics, jpeg, webp, headline],
              api_name="compress")


def budget_tab(T):
    T(gr.Markdown(t("budget_intro")), value="budget_intro")
    with gr.Row():
        ctx = T(gr.Slider(512, 32768, value=4096, step=512, label=t("budget_window")), label="budget_window")
        images = T(gr.Slider(0, 20, value=10, step=1, label=t("budget_images")), label="budget_images")
        m = T(gr.Slider(1, 1024, value=256, step=1, label=t("budget_m")), label="budget_m")
        text = T(gr.Slider(0, 8000, value=1995, step=5, label=t("budget_text")), label="budget_text")
    fig = gr.Plot()
    summary = gr.Markdown()
    for s in (ctx, images, m, text):
        s.change(bud.budget, [ctx, images, m, text], [fig, summary], api_name=False)
    T(gr.Button(t("budget_update"), elem_id="budget-update"), value="budget_update").click(
        bud.budget, [ctx, images, m, text], [fig, summary], api_name="budget")


def chat_tab(T, upload, tokenizer, m, lang):
    """The guide (§7, §8, §11): it reads the current artwork's tokens (when an adapter taught it these) and its
    catalog card; answers stream; everything is written to the audit log."""
    sid = gr.State(None)
    readable = ", ".join(f"`{n}`" for n in ch.guide_tokenizers()) or "—"
    with gr.Row():
        with gr.Column(scale=1):
            status = gr.Markdown(ch.backend_status(), elem_id="chat-status")
            gr.Markdown(t("chat_reads", names=readable), elem_id="chat-reads")
            context = T(gr.Slider(256, 8192, value=ch.DEFAULT_CONTEXT, step=64, label=t("context"),
                                  elem_id="chat-context"), label="context")
            recognise = T(gr.Checkbox(True, label=t("chat_recognise"), elem_id="chat-recognise"), label="chat_recognise")
            load = gr.Button("⟳", elem_id="chat-load", visible=False)
            grid = T(gr.Plot(label=t("chat_grid")), label="chat_grid")
            budget = T(gr.Plot(label=t("chat_budget")), label="chat_budget")
        with gr.Column(scale=2):
            chatbot = T(gr.Chatbot(label=t("chat_box"), height=460, elem_id="chatbot"), label="chat_box")
            question = T(gr.Textbox(label=t("chat_question"), placeholder=t("chat_placeholder"), elem_id="chat-question"),
                         label="chat_question", placeholder="chat_placeholder")
            with gr.Row():
                send = T(gr.Button(t("chat_send"), variant="primary", elem_id="chat-send"), value="chat_send")
                clear = T(gr.Button(t("chat_clear"), elem_id="chat-clear"), value="chat_clear")
            gr.Examples([[q] for q in SAMPLE_QUESTIONS], inputs=[question], label="Sample questions / Câu hỏi mẫu")
            notice = gr.Markdown(elem_id="chat-notice")
            with T(gr.Accordion(t("chat_sees"), open=False), label="chat_sees"):
                sees = gr.Textbox(lines=10, max_lines=30, show_label=False, elem_id="chat-sees")
            with gr.Row():
                audit_btn = T(gr.Button(t("chat_audit"), elem_id="chat-audit-btn"), value="chat_audit")
                audit = T(gr.File(label=t("chat_audit_file"), elem_id="chat-audit"), label="chat_audit_file")

    outputs = [sid, chatbot, sees, budget, grid, notice]
    timer = gr.Timer(1.0, active=ch.BACKEND.loading or not ch.BACKEND.loaded)
    timer.tick(lambda: (ch.backend_status(), gr.Timer(active=ch.BACKEND.loading)), None, [status, timer],
               api_name=False, show_progress="hidden")

    def on_load(source, name, M, s, ctx, rec):
        wait = ch.waiting_view(s)
        if wait is not None:
            yield wait.outputs() + (ch.backend_status(),)
        yield ch.load_image_for_chat(source, name, M, s, ctx, recognise=bool(rec)).outputs() + (ch.backend_status(),)

    def on_ask(q, history, s, ctx, source=None, name=None, M=None, rec=True):
        wait = ch.waiting_view(s, history)
        if wait is not None:
            yield wait.outputs() + (gr.skip(), ch.backend_status())
        if source is not None and name:                       # follow the header's current artwork
            v = ch.ensure_image(source, name, M, s, ctx, recognise=bool(rec))
            if v is not None:
                s = v.sid
                if v.sid is None or v.notice.startswith("**⚠"):
                    yield v.outputs() + (gr.skip(), ch.backend_status())
                    return
                history = []
                yield v.outputs() + (gr.skip(), ch.backend_status())
        for v in ch.chat_turn(q, history, s, ctx):
            out = [gr.skip() if x is None or x == "" else x for x in v.outputs()]
            out[1] = v.history
            yield tuple(out) + ("", ch.backend_status())

    load_inputs = [upload, tokenizer, m, sid, context, recognise]
    load.click(on_load, load_inputs, outputs + [status], api_name="chat_load")
    ask_inputs = [question, chatbot, sid, context, upload, tokenizer, m, recognise]
    # answers interleave token by token on the one model (llm/backends/hf.py FairLock): up to 8 at once,
    # so a visitor's first words do not wait for other visitors' whole answers
    question.submit(on_ask, ask_inputs, outputs + [question, status], api_name="chat_ask",
                    concurrency_limit=8, concurrency_id="chat")
    send.click(on_ask, ask_inputs, outputs + [question, status], api_name="chat_send",
               concurrency_limit=8, concurrency_id="chat")
    clear.click(lambda s: ch.clear_chat(s).outputs(), sid, outputs, api_name="chat_clear")
    audit_btn.click(ch.audit_file, sid, audit, api_name="chat_audit")


def build_demo() -> gr.Blocks:
    T = Texts()
    # uploads and Gradio's temporary files older than a day are deleted every hour (audit logs are not there)
    with gr.Blocks(title="museumtok", delete_cache=(3600, 86400)) as demo:
        lang, gallery, upload, current_img, current_md, tokenizer, m, m_slider = header(T)
        with gr.Tabs():
            with T(gr.Tab(t("tab_tokenize"), id="tokenize"), label="tab_tokenize"):
                run_tokenize, tok_inputs, tok_outputs = tokenize_tab(T, upload, tokenizer, m, lang)
            with T(gr.Tab(t("tab_inpaint"), id="inpaint"), label="tab_inpaint"):
                on_canvas, canvas, inpaint_msg = inpaint_tab(T, upload, lang)
            with T(gr.Tab(t("tab_codecs"), id="codecs"), label="tab_codecs"):
                codec_tab(T, upload, lang)
            with T(gr.Tab(t("tab_budget"), id="budget"), label="tab_budget"):
                budget_tab(T)
            with T(gr.Tab(t("tab_chat"), id="chat"), label="tab_chat"):
                chat_tab(T, upload, tokenizer, m, lang)

        # ---- one current artwork: the gallery or an upload sets it; every tab reads it ----------------------
        def on_gallery(evt: gr.SelectData):
            return str(hd.gallery_entry(evt.index).find())

        gallery.select(on_gallery, None, upload, api_name="pick_artwork")

        def on_current(source, lg="English"):
            img, caption = hd.current_artwork(source, norm_lang(lg))
            return img, caption

        upload.change(on_current, [upload, lang], [current_img, current_md], api_name="current_artwork").then(
            run_tokenize, tok_inputs, tok_outputs, api_name=False).then(
            on_canvas, [upload, lang], [canvas, inpaint_msg], api_name=False)

        def on_tokenizer(name):
            values, default = hd.m_choices(name)
            rng = hd.m_slider_range(name)
            slider = gr.Slider(minimum=rng[0], maximum=rng[1], value=default, visible=True) if rng else gr.Slider(visible=False)
            return gr.Dropdown(choices=values, value=default, visible=rng is None), slider

        tokenizer.change(on_tokenizer, tokenizer, [m, m_slider], api_name="m_choices")
        m_slider.release(lambda v: gr.Dropdown(value=int(v)), m_slider, m, api_name="m_from_slider")
        m.input(run_tokenize, tok_inputs, tok_outputs, api_name=False)

        # ---- the language: the browser's, then the switch --------------------------------------------------------
        demo.load(None, None, lang, js=DETECT_LANG_JS)
        components = [c for c, _ in T.items]
        lang.change(T.relabel, lang, components, api_name=False).then(
            on_current, [upload, lang], [current_img, current_md], api_name=False)
    return demo


demo = build_demo()


def main(argv=None):
    p = argparse.ArgumentParser(description="museumtok app")
    p.add_argument("--host", default=os.environ.get("MUSEUMTOK_HOST", "127.0.0.1"),
                   help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=int(os.environ.get("MUSEUMTOK_PORT", 7860)))
    p.add_argument("--share", action="store_true", help="create a public share link (off by default)")
    p.add_argument("--auth", default=os.environ.get("MUSEUMTOK_AUTH"),
                   help="user:password required to open the app (off by default)")
    p.add_argument("--llm", default=None,
                   help="chat backend: embedded (default), hf:<path or Hub id>, http://host:port/v1#model, echo "
                        "(or $MUSEUMTOK_LLM)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("MUSEUMTOK_THREADS", 1)),
                   help="torch threads per operation (default 1: several visitors' requests run at once and share "
                        "the cores; 0: torch's default, one per core, a little faster for a single visitor; "
                        "see benchmarks/app_load.py and the README)")
    a = p.parse_args(argv)
    if a.threads > 0:
        import torch

        torch.set_num_threads(a.threads)
    if a.llm:
        ch.BACKEND.set(spec=a.llm)
    ch.BACKEND.start(preload=ch.preload_guide)       # the LLM loads while the page opens
    from museumtok.llm.audit import close_dangling

    close_dangling(cache_dir("audit"))               # questions a killed server never answered get their record
    from museumtok.app.server import longer_keep_alive

    longer_keep_alive()                              # no keep-alive race under load (museumtok/app/server.py)
    auth = tuple(a.auth.split(":", 1)) if a.auth else None
    print(f"museumtok: {museumtok_command()} — open http://{a.host}:{a.port}", flush=True)
    demo.queue(default_concurrency_limit=2).launch(
        server_name=a.host, server_port=a.port, share=a.share, auth=auth, max_file_size="50mb",
        allowed_paths=[str(r) for r in image_roots()] + [str(cache_dir("thumbs")), str(cache_dir("audit"))],
        show_error=True, theme=THEME, css=CSS,
    )


if __name__ == "__main__":
    main()
