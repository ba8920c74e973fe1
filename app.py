"""museumtok's Gradio app: upload an artwork, pick a tokenizer and M, see what the tokens keep.

Layout and event wiring only; every callback lives in ``museumtok.app.callbacks`` (unit-tested).

    python app.py                       # http://127.0.0.1:7860, this machine only
    python app.py --share               # a public gradio.live link (explicit)
    python app.py --auth user:password  # ask for a password
"""
from __future__ import annotations

import argparse
import os

import gradio as gr

from museumtok.app import attention as att
from museumtok.app import callbacks as cb
from museumtok.app import codebook as cbh
from museumtok.paths import cache_dir, image_roots

INTRO = """# museumtok
Squeeze an artwork into a few discrete tokens, see what survives, and compare with JPEG and WebP at
the same number of bits. Pick an artwork below or upload your own, choose a tokenizer and a token count **M**."""


def tokenize_tab():
    tokenizers = cb.tokenizer_choices()
    first = tokenizers[-1] if tokenizers else None
    m_values, m_default = cb.m_choices(first) if first else ([], None)
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Upload an image (JPEG, PNG, WebP, TIFF, GIF; ≤ 50 MB, ≤ 40 MP)",
                             file_types=["image", ".tif", ".tiff"], type="filepath", elem_id="upload")
            items = cb.catalog_gallery()
            gr.Markdown(cb.catalog_hint(items), visible=not items, elem_id="catalog-hint")
            gallery = gr.Gallery(value=items, label=cb.gallery_label(items),
                                 columns=6, height=260, allow_preview=False, elem_id="gallery")
            tokenizer = gr.Dropdown(tokenizers, value=first, label="Tokenizer", elem_id="tokenizer")
            m_range = cb.m_slider_range(first) if first else None
            m = gr.Dropdown(m_values, value=m_default, label="Token count M", elem_id="m", visible=m_range is None)
            m_slider = gr.Slider(*(m_range or (1, 2)), value=m_default or 1, step=1, label="Token count M (any value)",
                                 elem_id="m-slider", visible=m_range is not None)
            with gr.Row():
                context = gr.Number(4096, label="Context window (tokens)", precision=0)
                text_tokens = gr.Number(200, label="Text tokens in the prompt", precision=0)
            run = gr.Button("Tokenize", variant="primary", elem_id="run")
        with gr.Column(scale=2):
            notes = gr.Markdown(elem_id="notes")
            with gr.Row():
                original = gr.Image(label="Working image (original)", type="pil", interactive=False)
                recon = gr.Image(label="Reconstruction from the tokens", type="pil", interactive=False,
                                 elem_id="reconstruction")
                err = gr.Image(label="Error map", type="pil", interactive=False)
            metrics = gr.Dataframe(headers=cb.METRIC_COLUMNS, label="Metrics (same bits for JPEG/WebP)",
                                   interactive=False, elem_id="metrics", wrap=True)
            with gr.Row():
                jpeg = gr.Image(label="JPEG at the same bits", type="pil", interactive=False)
                webp = gr.Image(label="WebP at the same bits", type="pil", interactive=False)
            grid = gr.Plot(label="Token grid (hover: token and patch)")
            budget = gr.Plot(label="Context budget")
            with gr.Accordion("Codebook health (usage, perplexity, dead codes)", open=False):
                health_run = gr.Button("Check the codebook on this image", elem_id="codebook-health")
                health_md = gr.Markdown()
                health_plot = gr.Plot(label="Code usage, most used first")
            with gr.Accordion("Token attention (resampler tokenizers such as anym)", open=False):
                att_token = gr.Slider(0, 63, value=0, step=1, label="Token (0 = first)", elem_id="att-token")
                att_run = gr.Button("Show where this token looks", elem_id="token-attention")
                att_md = gr.Markdown()
                with gr.Row():
                    att_overlay = gr.Image(label="This token's attention", type="pil", interactive=False)
                    att_mosaic = gr.Image(label="All M tokens' attention", type="pil", interactive=False)

    def run_tokenize(source, name, M, ctx, txt):
        r = cb.tokenize_image(source, name, M, ctx or 4096, txt or 0)
        return (cb.notes_markdown(r), r.original, r.reconstruction, r.error_image, r.metrics_rows(),
                r.comparisons.get("jpeg"), r.comparisons.get("webp"), r.grid, r.budget)

    def on_tokenizer(name):
        values, default = cb.m_choices(name)
        rng = cb.m_slider_range(name)
        slider = gr.Slider(minimum=rng[0], maximum=rng[1], value=default, visible=True) if rng else gr.Slider(visible=False)
        return gr.Dropdown(choices=values, value=default, visible=rng is None), slider

    def on_gallery(evt: gr.SelectData):
        return str(cb.gallery_entry(evt.index).find())

    outputs = [notes, original, recon, err, metrics, jpeg, webp, grid, budget]
    inputs = [upload, tokenizer, m, context, text_tokens]
    tokenizer.change(on_tokenizer, tokenizer, [m, m_slider], api_name="m_choices")
    # tokenizers with a continuous M (any-M) show a slider; it feeds the same M input
    m_slider.release(lambda v: gr.Dropdown(value=int(v)), m_slider, m, api_name="m_from_slider")
    gallery.select(on_gallery, None, upload, api_name="pick_artwork").then(
        run_tokenize, inputs, outputs, api_name=False)
    upload.upload(run_tokenize, inputs, outputs, api_name="tokenize_upload")
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


def budget_tab():
    gr.Markdown("Chapter 1's question: do 10 images of 256 tokens and 1.5k words (≈2k tokens) fit in 4k?")
    with gr.Row():
        ctx = gr.Slider(512, 32768, value=4096, step=512, label="Context window")
        images = gr.Slider(0, 20, value=10, step=1, label="Images")
        m = gr.Slider(1, 1024, value=256, step=1, label="Tokens per image (M)")
        text = gr.Slider(0, 8000, value=1995, step=5, label="Text tokens (1.5k words ≈ 1995)")
    fig = gr.Plot()
    summary = gr.Markdown()
    for s in (ctx, images, m, text):
        s.change(cb.budget, [ctx, images, m, text], [fig, summary], api_name=False)
    gr.Button("Update", elem_id="budget-update").click(cb.budget, [ctx, images, m, text], [fig, summary],
                                                       api_name="budget")


def chat_tab():
    """Ask the LLM about an artwork: its tokens go into the prompt (§6, §8); answers stream."""
    from museumtok.app import chat as ch

    tokenizers = cb.tokenizer_choices()
    first = ch.default_chat_tokenizer()
    m_values, m_default = cb.m_choices(first) if first else ([], None)
    m_default = 64 if 64 in m_values else m_default       # the guide adapters were trained at M = 64
    sid = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1):
            status = gr.Markdown(ch.backend_status(), elem_id="chat-status")
            upload = gr.File(label="Upload an artwork", file_types=["image", ".tif", ".tiff"], type="filepath",
                             elem_id="chat-upload")
            tokenizer = gr.Dropdown(tokenizers, value=first, label="Tokenizer", elem_id="chat-tokenizer",
                                    info="The guide reads " + ", ".join(ch.guide_tokenizers() or ["no tokenizer"])
                                    + "; with any other it answers from the catalog card only.")
            m = gr.Dropdown(m_values, value=m_default, label="Token count M", elem_id="chat-m")
            context = gr.Slider(256, 8192, value=ch.DEFAULT_CONTEXT, step=64, label="Context window (tokens)",
                                elem_id="chat-context")
            recognise = gr.Checkbox(True, label="Look the work up in the catalog (its card goes into the prompt)",
                                    elem_id="chat-recognise")
            load = gr.Button("Use this image", elem_id="chat-load")
            grid = gr.Plot(label="Token grid (cited tokens boxed in red)")
            budget = gr.Plot(label="Context budget of the last prompt")
        with gr.Column(scale=2):
            chatbot = gr.Chatbot(label="Ask the guide about the artwork", height=420, elem_id="chatbot")
            question = gr.Textbox(label="Your question", placeholder="What colours dominate this painting?",
                                  elem_id="chat-question")
            with gr.Row():
                send = gr.Button("Ask", variant="primary", elem_id="chat-send")
                clear = gr.Button("Clear the conversation", elem_id="chat-clear")
            notice = gr.Markdown(elem_id="chat-notice")
            with gr.Accordion("What the LLM sees (the prompt, image tokens included)", open=False):
                sees = gr.Textbox(lines=10, max_lines=30, show_label=False, elem_id="chat-sees")
            with gr.Row():
                audit_btn = gr.Button("Download the audit log", elem_id="chat-audit-btn")
                audit = gr.File(label="Audit log (JSONL)", elem_id="chat-audit")

    outputs = [sid, chatbot, sees, budget, grid, notice]
    timer = gr.Timer(1.0, active=ch.BACKEND.loading or not ch.BACKEND.loaded)

    def on_tick():
        return ch.backend_status(), gr.Timer(active=ch.BACKEND.loading)

    timer.tick(on_tick, None, [status, timer], api_name=False, show_progress="hidden")

    def on_load(source, name, M, s, ctx, rec):
        wait = ch.waiting_view(s)
        if wait is not None:
            yield wait.outputs() + (ch.backend_status(),)
        yield ch.load_image_for_chat(source, name, M, s, ctx, recognise=bool(rec)).outputs() + (ch.backend_status(),)

    def on_ask(q, history, s, ctx):
        wait = ch.waiting_view(s, history)
        if wait is not None:
            yield wait.outputs() + (gr.skip(), ch.backend_status())
        for v in ch.chat_turn(q, history, s, ctx):
            out = [gr.skip() if x is None or x == "" else x for x in v.outputs()]
            out[1] = v.history
            yield tuple(out) + ("", ch.backend_status())

    def on_tokenizer(name):
        values, default = cb.m_choices(name)
        return gr.Dropdown(choices=values, value=default)

    load_inputs = [upload, tokenizer, m, sid, context, recognise]
    tokenizer.change(on_tokenizer, tokenizer, m, api_name="chat_m_choices")
    upload.upload(on_load, load_inputs, outputs + [status], api_name="chat_image")
    load.click(on_load, load_inputs, outputs + [status], api_name="chat_load")
    ask_inputs = [question, chatbot, sid, context]
    question.submit(on_ask, ask_inputs, outputs + [question, status], api_name="chat_ask")
    send.click(on_ask, ask_inputs, outputs + [question, status], api_name="chat_send")
    clear.click(lambda s: ch.clear_chat(s).outputs(), sid, outputs, api_name="chat_clear")
    audit_btn.click(ch.audit_file, sid, audit, api_name="chat_audit")


def codec_tab():
    from museumtok.app import codecs as cc

    choices = cc.codec_choices()
    gr.Markdown("Learned codecs write real bitstreams (§5): M does not apply, the rate is set by the checkpoint's λ.")
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Upload an image", file_types=["image", ".tif", ".tiff"], type="filepath",
                             elem_id="codec-upload")
            codec = gr.Dropdown(choices, value=choices[-1] if choices else None, label="Codec", elem_id="codec")
            size = gr.Dropdown(list(cc.CODEC_SIZES), value=512, label="Centre crop (px)")
            run = gr.Button("Compress", variant="primary", elem_id="codec-run")
        with gr.Column(scale=2):
            notes = gr.Markdown()
            with gr.Row():
                original = gr.Image(label="Original crop", type="pil", interactive=False)
                recon = gr.Image(label="Decoded from the bytes", type="pil", interactive=False)
                bmap = gr.Image(label="Bits per pixel", type="pil", interactive=False)
            metrics = gr.Dataframe(headers=cb.METRIC_COLUMNS, label="Metrics (JPEG/WebP at the same bits)",
                                   interactive=False, wrap=True)
            with gr.Row():
                jpeg = gr.Image(label="JPEG at the same bits", type="pil", interactive=False)
                webp = gr.Image(label="WebP at the same bits", type="pil", interactive=False)

    def run_codec(source, name, px):
        r = cc.compress_image(source, name, px or 512)
        return (cc.codec_notes_markdown(r), r.original, r.reconstruction, r.bpp_map,
                r.metrics_rows(cb.METRIC_COLUMNS), r.comparisons.get("jpeg"), r.comparisons.get("webp"))

    run.click(run_codec, [upload, codec, size], [notes, original, recon, bmap, metrics, jpeg, webp],
              api_name="compress")


def inpaint_tab():
    """§4.6: mask the tokens under a box and let MaskGIT fill them in, step by step."""
    from museumtok.app import inpaint as ip

    gr.Markdown("A visitor stands in front of the painting: the tokens under the box (fractions of the image) are "
                "hidden and MaskGIT regenerates them in T parallel steps. Tokens outside the box never change.")
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Upload an image", file_types=["image", ".tif", ".tiff"], type="filepath",
                             elem_id="inpaint-upload")
            with gr.Row():
                x0 = gr.Slider(0, 1, value=0.375, step=0.125, label="box left")
                x1 = gr.Slider(0, 1, value=0.625, step=0.125, label="box right")
            with gr.Row():
                y0 = gr.Slider(0, 1, value=0.25, step=0.125, label="box top")
                y1 = gr.Slider(0, 1, value=0.875, step=0.125, label="box bottom")
            steps = gr.Slider(1, 16, value=8, step=1, label="decoding steps T")
            temperature = gr.Slider(0.1, 3.0, value=1.0, step=0.1, label="temperature τ0")
            seed = gr.Number(0, label="seed", precision=0)
            run = gr.Button("Inpaint", variant="primary", elem_id="inpaint-run")
        with gr.Column(scale=2):
            message = gr.Markdown(elem_id="inpaint-message")
            with gr.Row():
                original = gr.Image(label="Working image", type="pil", interactive=False)
                masked = gr.Image(label="Tokens masked (grey)", type="pil", interactive=False)
                result = gr.Image(label="Filled in by MaskGIT", type="pil", interactive=False)
            frames = gr.Gallery(label="Each decoding step", columns=8, height=200)

    def on_run(source, a, b, c, d, t, tau, s):
        r = ip.inpaint_image(source, a, b, c, d, t, tau, s or 0)
        if r.error:
            return f"**{r.error}**", None, None, None, []
        return r.message, r.original, r.masked, r.result, r.steps

    run.click(on_run, [upload, x0, y0, x1, y1, steps, temperature, seed], [message, original, masked, result, frames],
              api_name="inpaint")


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="museumtok") as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Tokenize"):
            tokenize_tab()
        with gr.Tab("Inpaint"):
            inpaint_tab()
        with gr.Tab("Codecs"):
            codec_tab()
        with gr.Tab("Context budget"):
            budget_tab()
        with gr.Tab("Chat"):
            chat_tab()
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
    a = p.parse_args(argv)
    from museumtok.app import chat as ch

    if a.llm:
        ch.BACKEND.set(spec=a.llm)
    ch.BACKEND.start(preload=ch.preload_guide)       # the LLM loads while the page opens
    auth = tuple(a.auth.split(":", 1)) if a.auth else None
    demo.queue(default_concurrency_limit=2).launch(
        server_name=a.host, server_port=a.port, share=a.share, auth=auth, max_file_size="50mb",
        allowed_paths=[str(r) for r in image_roots()] + [str(cache_dir("thumbs")), str(cache_dir("audit"))],
        show_error=True,
    )


if __name__ == "__main__":
    main()
