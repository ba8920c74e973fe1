"""The Gradio app's logic: pure callbacks (``callbacks``); ``app.py`` at the repo root wires them."""
