"""The app in English and Vietnamese: every label, message and error, chosen from the browser's
language with a switch in the header (no machine translation at run time).

    t("tokenize_run", "vi")                       # "Mã hoá thành token"
    t("plain_line", "en", M=256, bits="2 560")     # templates take named fields
    error_text(err, "vi")                          # an ImageLoadError / UnsupportedM in the visitor's language
    lang_from_browser("vi-VN,vi;q=0.9,en;q=0.8")  # "vi"

:data:`STRINGS` maps a key to its English and Vietnamese text; a test checks that both exist for every
key and take the same fields. ``app.py`` relabels its components when the switch changes
(:func:`labels`); the pure callbacks take ``lang`` and build their messages with :func:`t`.
"""
from __future__ import annotations

import string

LANGS = ("en", "vi")
LANG_NAMES = {"en": "English", "vi": "Tiếng Việt"}

STRINGS: dict[str, tuple[str, str]] = {
    # ---- header -------------------------------------------------------------------------------------
    "title": ("# museumtok · how an artwork becomes tokens an LLM can read",
              "# museumtok · một tác phẩm trở thành token cho mô hình ngôn ngữ đọc như thế nào"),
    "intro": ("Pick an artwork (or upload your own), choose a tokenizer and a token count **M**: every tab "
              "works on the same artwork.",
              "Chọn một tác phẩm (hoặc tải ảnh của bạn lên), chọn bộ mã hoá token và số token **M**: mọi thẻ "
              "đều dùng cùng một tác phẩm."),
    "language": ("Language", "Ngôn ngữ"),
    "gallery": ("Pick an artwork from the catalog", "Chọn một tác phẩm trong danh mục"),
    "upload": ("…or upload an image (JPEG, PNG, WebP, TIFF, GIF; ≤ 50 MB, ≤ 40 MP)",
               "…hoặc tải ảnh lên (JPEG, PNG, WebP, TIFF, GIF; ≤ 50 MB, ≤ 40 MP)"),
    "current": ("The artwork on every tab", "Tác phẩm dùng cho mọi thẻ"),
    "current_none": ("No artwork chosen yet: pick one from the gallery or upload an image.",
                     "Chưa chọn tác phẩm: hãy chọn trong thư viện ảnh hoặc tải ảnh lên."),
    "current_catalog": ("**{title}** — {artist}, {year}", "**{title}** — {artist}, {year}"),
    "current_upload": ("Your upload: **{name}** ({w}×{h} px)", "Ảnh bạn tải lên: **{name}** ({w}×{h} px)"),
    "tokenizer": ("Tokenizer", "Bộ mã hoá token"),
    "m": ("Token count M", "Số token M"),
    "m_slider": ("Token count M (any value)", "Số token M (giá trị bất kỳ)"),
    "no_images": ("No catalog images found: run `{cmd} data fetch` or set MUSEUMTOK_DATA, then restart the app. "
                  "Uploading your own image works meanwhile.",
                  "Không tìm thấy ảnh của danh mục: hãy chạy `{cmd} data fetch` hoặc đặt MUSEUMTOK_DATA rồi khởi "
                  "động lại ứng dụng. Trong lúc đó vẫn có thể tải ảnh của bạn lên."),
    # ---- tabs -----------------------------------------------------------------------------------------
    "tab_tokenize": ("Tokenize", "Mã hoá token"),
    "tab_inpaint": ("Inpaint", "Vẽ bù (inpaint)"),
    "tab_codecs": ("Codecs", "Bộ nén (codec)"),
    "tab_budget": ("Context budget", "Ngân sách ngữ cảnh"),
    "tab_chat": ("Chat", "Trò chuyện"),
    # ---- tokenize (presenter view) -----------------------------------------------------------------------
    "tokenize_run": ("Tokenize", "Mã hoá thành token"),
    "original": ("Original (working image {S}×{S} px, shown ×{k})", "Ảnh gốc (ảnh làm việc {S}×{S} px, phóng ×{k})"),
    "original_plain": ("Original", "Ảnh gốc"),
    "recon": ("Rebuilt from the tokens", "Dựng lại từ các token"),
    "jpeg_same": ("JPEG with the same bits", "JPEG với cùng số bit"),
    "webp_same": ("WebP with the same bits", "WebP với cùng số bit"),
    "details": ("Details: metrics, error map, token grid, context budget", "Chi tiết: chỉ số, bản đồ sai số, lưới token, ngân sách ngữ cảnh"),
    "details_codec": ("Details: metrics and notes", "Chi tiết: chỉ số và ghi chú"),
    "metrics": ("Metrics (JPEG/WebP at the same bits)", "Chỉ số (JPEG/WebP cùng số bit)"),
    "error_map": ("Error map (dark = exact)", "Bản đồ sai số (tối = chính xác)"),
    "grid": ("Token grid (hover: token and patch)", "Lưới token (di chuột: token và mảnh ảnh)"),
    "budget_plot": ("Context budget", "Ngân sách ngữ cảnh"),
    "context": ("Context window (tokens)", "Cửa sổ ngữ cảnh (token)"),
    "text_tokens": ("Text tokens in the prompt", "Số token văn bản trong lời nhắc"),
    "health": ("Codebook health (usage, perplexity, dead codes)", "Sức khoẻ bảng mã (mức dùng, độ bối rối, mã chết)"),
    "health_run": ("Check the codebook on this image", "Kiểm tra bảng mã trên ảnh này"),
    "attention": ("Token attention (resampler tokenizers such as anym)", "Chú ý của token (bộ mã hoá resampler như anym)"),
    "att_token": ("Token (0 = first)", "Token (0 = đầu tiên)"),
    "att_run": ("Show where this token looks", "Xem token này nhìn vào đâu"),
    "plain_line": ("**{M} tokens = {bits} bits.** {verdict}", "**{M} token = {bits} bit.** {verdict}"),
    "plain_line_coded": ("**{M} tokens = {bits} bits** ({raw} before entropy coding). {verdict}",
                         "**{M} token = {bits} bit** ({raw} bit trước khi mã hoá entropy). {verdict}"),
    "verdict_worse": ("With the same bits {codec} gives a worse picture ({psnr_c} dB against {psnr_t} dB){match}.",
                      "Với cùng số bit, {codec} cho ảnh kém hơn ({psnr_c} dB so với {psnr_t} dB){match}."),
    "verdict_better": ("With the same bits {codec} gives a better picture ({psnr_c} dB against {psnr_t} dB): tokens are "
                       "made for an LLM to read, not to beat image codecs.",
                       "Với cùng số bit, {codec} cho ảnh tốt hơn ({psnr_c} dB so với {psnr_t} dB): token được làm để mô "
                       "hình ngôn ngữ đọc, không phải để thắng các bộ nén ảnh."),
    "verdict_match": ("; {codec} needs {need} bits to look as good", "; {codec} cần {need} bit để đạt cùng chất lượng"),
    "verdict_nofit": ("{codec} cannot even get down to that many bits: at its lowest quality it needs {need} bits.",
                      "{codec} thậm chí không xuống được số bit đó: ở chất lượng thấp nhất nó cần {need} bit."),
    "working_note": ("Working image: centre crop of the {W}×{H} original, resized to {S}×{S} px.",
                     "Ảnh làm việc: cắt giữa ảnh gốc {W}×{H}, thu về {S}×{S} px."),
    "lpips_na": ("LPIPS n/a: {reason}", "LPIPS không có: {reason}"),
    # ---- inpaint --------------------------------------------------------------------------------------------
    "inpaint_intro": ("A visitor stands in front of the painting: **draw over the part to hide** (any brush), and "
                      "MaskGIT regenerates the tokens under it in T parallel steps. Tokens outside never change.",
                      "Một khách tham quan đứng chắn trước bức tranh: **tô lên phần cần che** (cọ bất kỳ), MaskGIT sẽ "
                      "tạo lại các token bên dưới trong T bước song song. Các token bên ngoài không đổi."),
    "inpaint_canvas": ("Draw over the part to hide", "Tô lên phần cần che"),
    "inpaint_steps": ("Decoding steps T", "Số bước giải mã T"),
    "inpaint_tau": ("Temperature τ0 (review's schedule only)", "Nhiệt độ τ0 (chỉ cho lịch của bài tổng quan)"),
    "inpaint_decoding": ("Decoding", "Cách giải mã"),
    "inpaint_dec_paper": ("MaskGIT paper (τ = 1, choice noise)", "Bài báo MaskGIT (τ = 1, nhiễu chọn)"),
    "inpaint_dec_review": ("Review's τ_t schedule", "Lịch τ_t của bài tổng quan"),
    "inpaint_how_paper": ("Decoding: MaskGIT's own (Chang et al. 2022): codes sampled at temperature 1, the most "
                          "probable kept, with annealed random noise in the choice.",
                          "Giải mã: đúng như MaskGIT (Chang và cs. 2022): lấy mẫu mã ở nhiệt độ 1, giữ các mã có xác "
                          "suất cao nhất, có nhiễu ngẫu nhiên giảm dần khi chọn."),
    "inpaint_how_review": ("Decoding: the review's schedule τ_t = max(0.1, {tau0}·0.9^t), not MaskGIT's own.",
                           "Giải mã: lịch của bài tổng quan τ_t = max(0.1, {tau0}·0.9^t), không phải của MaskGIT."),
    "inpaint_seed": ("Seed", "Hạt giống ngẫu nhiên"),
    "inpaint_run": ("Fill it in", "Vẽ bù"),
    "inpaint_masked": ("Hidden tokens (grey)", "Token bị che (xám)"),
    "inpaint_step": ("Decoding: step {t} of {T}", "Giải mã: bước {t}/{T}"),
    "inpaint_result": ("Filled in by MaskGIT", "MaskGIT vẽ bù"),
    "inpaint_frames": ("Every decoding step", "Từng bước giải mã"),
    "inpaint_nobox": ("Nothing drawn yet: draw over the part of the picture to hide (the centre box is used meanwhile).",
                      "Chưa tô gì: hãy tô lên phần ảnh cần che (tạm dùng ô giữa ảnh)."),
    "inpaint_msg": ("{n} of {N} tokens masked (rows {r0}–{r1}, columns {c0}–{c1}); MaskGIT filled them in {T} parallel "
                    "steps; {changed} tokens differ from the original. Trained for 10 minutes on a CPU: judge the "
                    "mechanics, not the picture.",
                    "Che {n}/{N} token (hàng {r0}–{r1}, cột {c0}–{c1}); MaskGIT vẽ bù trong {T} bước song song; {changed} "
                    "token khác bản gốc. Mô hình chỉ được huấn luyện 10 phút trên CPU: hãy xem cơ chế, đừng xét ảnh."),
    "inpaint_unavailable": ("Inpainting is unavailable: {why}.", "Không vẽ bù được: {why}."),
    # ---- codecs ---------------------------------------------------------------------------------------------
    "codec_intro": ("Learned codecs write a real file (§5): M does not apply, the rate is set by the checkpoint's λ.",
                    "Bộ nén học sâu ghi ra một tệp thật (§5): M không áp dụng, tốc độ bit do λ của mô hình quyết định."),
    "codec": ("Codec", "Bộ nén"),
    "codec_size": ("Centre crop (px)", "Cắt giữa (px)"),
    "codec_run": ("Compress", "Nén"),
    "codec_original": ("Original crop", "Ảnh cắt gốc"),
    "codec_recon": ("Decoded from the bytes", "Giải mã từ các byte"),
    "codec_bpp": ("Where the bits go (brighter = more)", "Bit dồn vào đâu (sáng = nhiều)"),
    "codec_line": ("**{codec}: {nbytes} bytes = {bpp} bits per pixel** for the {S}×{S} crop. {verdict}",
                   "**{codec}: {nbytes} byte = {bpp} bit mỗi điểm ảnh** cho ảnh cắt {S}×{S}. {verdict}"),
    # ---- budget ---------------------------------------------------------------------------------------------
    "budget_intro": ("Chapter 1's question: do 10 images of 256 tokens and 1.5k words (≈2k tokens) fit in 4k?",
                     "Câu hỏi của chương 1: 10 ảnh × 256 token và 1,5 nghìn từ (≈2 nghìn token) có vừa 4 nghìn không?"),
    "budget_window": ("Context window", "Cửa sổ ngữ cảnh"),
    "budget_images": ("Images", "Số ảnh"),
    "budget_m": ("Tokens per image (M)", "Token mỗi ảnh (M)"),
    "budget_text": ("Text tokens (1.5k words ≈ 1995)", "Token văn bản (1,5 nghìn từ ≈ 1995)"),
    "budget_update": ("Update", "Cập nhật"),
    # ---- chat -----------------------------------------------------------------------------------------------
    "chat_box": ("Ask the guide about the artwork", "Hỏi hướng dẫn viên về tác phẩm"),
    "chat_question": ("Your question (English or Vietnamese)", "Câu hỏi của bạn (tiếng Anh hoặc tiếng Việt)"),
    "chat_placeholder": ("What colours dominate this painting?", "Màu nào chiếm ưu thế trong bức tranh này?"),
    "chat_send": ("Ask", "Hỏi"),
    "chat_clear": ("Clear the conversation", "Xoá cuộc trò chuyện"),
    "chat_recognise": ("Look the work up in the catalog (its card goes into the prompt)",
                       "Tra tác phẩm trong danh mục (thẻ danh mục được đưa vào lời nhắc)"),
    "chat_sees": ("What the LLM sees (the prompt, image tokens included)", "Những gì mô hình ngôn ngữ thấy (lời nhắc, kể cả token ảnh)"),
    "chat_audit": ("Download the audit log", "Tải nhật ký kiểm toán"),
    "chat_audit_file": ("Audit log (JSONL)", "Nhật ký kiểm toán (JSONL)"),
    "chat_grid": ("Token grid (cited tokens boxed in red)", "Lưới token (token được trích dẫn đóng khung đỏ)"),
    "chat_budget": ("Context budget of the last prompt", "Ngân sách ngữ cảnh của lời nhắc gần nhất"),
    "chat_reads": ("The guide reads {names}; with any other tokenizer it answers from the catalog card only.",
                   "Hướng dẫn viên đọc được {names}; với bộ mã hoá khác nó chỉ trả lời theo thẻ danh mục."),
    "chat_examples": ("Sample questions", "Câu hỏi mẫu"),
    "chat_loading": ("⏳ Getting the guide ready: {stage}… ({s} s)", "⏳ Đang chuẩn bị hướng dẫn viên: {stage}… ({s} giây)"),
    "chat_ready": ("✓ The guide is ready (LLM `{name}`, context {ctx} tokens{took})",
                   "✓ Hướng dẫn viên đã sẵn sàng (mô hình `{name}`, ngữ cảnh {ctx} token{took})"),
    "chat_wait": ("Your request runs as soon as it is.", "Yêu cầu của bạn sẽ chạy ngay khi xong."),
    "chat_new_image": ("New image: {M} tokens of {tok} in the prompt; the conversation starts afresh.",
                       "Ảnh mới: {M} token của {tok} trong lời nhắc; cuộc trò chuyện bắt đầu lại."),
    # ---- errors and notices ------------------------------------------------------------------------------------
    "need_image": ("Upload an image or pick an artwork first.", "Hãy tải ảnh lên hoặc chọn một tác phẩm trước."),
    "cannot_use": ("Cannot use this file: {why}", "Không dùng được tệp này: {why}"),
    "is_codec": ("{name} is a codec, not a tokenizer.", "{name} là bộ nén, không phải bộ mã hoá token."),
    "not_tokenizer": ("{name} is not a tokenizer: choose one from the menu.",
                      "{name} không phải bộ mã hoá token: hãy chọn một mục trong danh sách."),
    "working": ("Working…", "Đang xử lý…"),
    "loading_tok": ("Loading the tokenizer {name}…", "Đang tải bộ mã hoá {name}…"),
    "encoding": ("Encoding into tokens…", "Đang mã hoá thành token…"),
    "comparing": ("Comparing with JPEG and WebP…", "Đang so sánh với JPEG và WebP…"),
    "compressing": ("Compressing…", "Đang nén…"),
    # ImageLoadError / UnsupportedM keys (museumtok.data.images, museumtok.tokenizers.base)
    "err_no_file": ("the file is gone (upload it again)", "tệp không còn nữa (hãy tải lên lại)"),
    "err_file_too_big": ("the file is {mb} MB; the limit is {limit} MB", "tệp nặng {mb} MB; giới hạn là {limit} MB"),
    "err_empty": ("the file is empty", "tệp rỗng"),
    "err_not_image": ("this file is not an image (expected JPEG, PNG, WebP, GIF, TIFF, BMP…)",
                      "tệp này không phải ảnh (cần JPEG, PNG, WebP, GIF, TIFF, BMP…)"),
    "err_bomb": ("the image is too large to open safely", "ảnh quá lớn để mở an toàn"),
    "err_damaged": ("the image file is damaged or truncated", "tệp ảnh bị hỏng hoặc bị cắt cụt"),
    "err_too_many_pixels": ("the image is {w}×{h} = {mp} megapixels; the limit is {limit} megapixels",
                            "ảnh có {w}×{h} = {mp} megapixel; giới hạn là {limit} megapixel"),
    "err_too_small": ("the image is {w}×{h} pixels; each side must be at least {min} pixels",
                      "ảnh có {w}×{h} điểm ảnh; mỗi cạnh phải ít nhất {min} điểm ảnh"),
    "err_m_not_int": ("M must be a whole number, got {got}", "M phải là số nguyên, nhận được {got}"),
    "err_m_unsupported": ("{name} cannot produce M={M} tokens; choose one of {listed}",
                          "{name} không tạo được M={M} token; hãy chọn một trong {listed}"),
}


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def norm_lang(lang: str | None) -> str:
    """"vi", "vi-VN", "Tiếng Việt" → "vi"; anything else → "en"."""
    s = (lang or "").strip().lower()
    return "vi" if s.startswith("vi") or s.startswith("tiếng") else "en"


def t(key: str, lang: str | None = "en", **fields) -> str:
    """The text of ``key`` in ``lang`` ("en" or "vi"), with its named fields filled in."""
    en, vi = STRINGS[key]
    text = vi if norm_lang(lang) == "vi" else en
    return text.format(**fields) if fields else text


def lang_from_browser(accept_language: str | None) -> str:
    """The first of our languages in an Accept-Language header or ``navigator.language`` ("en" by default)."""
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()
        if code.startswith("vi"):
            return "vi"
        if code.startswith("en"):
            return "en"
    return "en"


def error_text(err: Exception, lang: str | None = "en") -> str:
    """An exception's message in ``lang``: translated when it carries a known ``key``, else its English text."""
    key = getattr(err, "key", None)
    if norm_lang(lang) == "vi" and key and f"err_{key}" in STRINGS:
        try:
            return t(f"err_{key}", "vi", **getattr(err, "params", {}))
        except (KeyError, IndexError):
            pass
    return str(err)


def labels(spec: dict[str, dict[str, str]], lang: str | None) -> dict[str, dict[str, str]]:
    """For each component name in ``spec`` ({name: {"label": key, "info": key, "placeholder": key, "value": key}}),
    the texts in ``lang``: what ``app.py`` turns into ``gr.update(**…)`` when the language switch changes."""
    return {name: {attr: t(key, lang) for attr, key in attrs.items()} for name, attrs in spec.items()}
