"""The Gradio app's logic, one module per part of the screen; ``app.py`` at the repo root only lays out and wires.

``header`` (the artwork every tab uses, the tokenizer / M menus) · ``tokenize`` (Tokenize tab) · ``codebook``
and ``attention`` (its panels) · ``inpaint`` · ``compress`` (Codecs tab) · ``budget`` (Context budget tab) ·
``chat``; shared by them: ``prepare`` (the checks and loading before any work, one message per bad input),
``baselines`` (JPEG / WebP at the same bits, the verdict line), ``i18n`` (every text, English and Vietnamese);
``server`` (uvicorn keep-alive).
"""
