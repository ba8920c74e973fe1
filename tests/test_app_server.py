"""The running app, driven through gradio_client: it answers, rejects bad input, and stays up."""
import io

import pytest
from gradio_client import Client, handle_file
from PIL import Image


@pytest.fixture(scope="module")
def client(app_server):
    return Client(app_server, verbose=False)


def test_tokenize_endpoint(client, kodak_path):
    out = client.predict(handle_file(str(kodak_path)), "lloyd-patch-k1024", 64, 4096, 200, api_name="/tokenize")
    headline, original, recon, jpeg, webp, metrics = out[:6]
    assert Image.open(recon).size == (512, 512)                  # the 64 px working image shown ×8 for the screen
    import museumtok

    coded = round(museumtok.load("lloyd-patch-k1024").encode(str(kodak_path), 64).bits_coded)  # its prior's bits
    assert f"64 tokens = {coded} bits" in headline and "(640 before entropy coding)" in headline and "WebP" in headline
    assert metrics["headers"][0] == "method"
    assert metrics["data"][0][0] == "lloyd-patch-k1024" and metrics["data"][0][2] == coded
    vi = client.predict(handle_file(str(kodak_path)), "lloyd-patch-k1024", 64, 4096, 200, "Tiếng Việt",
                        api_name="/tokenize")
    assert f"64 token = {coded} bit" in vi[0] and "640 bit trước khi mã hoá entropy" in vi[0]


def test_bad_file_gets_a_message_and_server_stays_up(client, tmp_path, kodak_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(kodak_path.read_bytes()[:2000])
    out = client.predict(handle_file(str(broken)), "lloyd-patch-k1024", 64, 4096, 200, api_name="/tokenize")
    assert "damaged or truncated" in out[0]
    vi = client.predict(handle_file(str(broken)), "lloyd-patch-k1024", 64, 4096, 200, "Tiếng Việt", api_name="/tokenize")
    assert "bị hỏng hoặc bị cắt cụt" in vi[0]                  # the same error in Vietnamese
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    assert "at least 16" in client.predict(handle_file(str(tiny)), "lloyd-patch-k1024", 64, 4096, 200, api_name="/tokenize")[0]
    out = client.predict(handle_file(str(kodak_path)), "lloyd-patch-k256", 256, 4096, 200, api_name="/tokenize")
    assert out[5]["data"][0][1] == 256, "the next request still works"


def test_m_menu_follows_the_tokenizer(client):
    menu, slider = client.predict("lloyd-patch-k256", api_name="/m_choices")
    # component updates: the menu's new value and choices; the slider stays hidden
    assert int(menu["value"]) == 256
    assert [int(c[0]) for c in menu["choices"]] == [64, 256, 1024]
    assert slider.get("visible") is False
    from museumtok import registry

    ranged = [e.name for e in registry.entries() if e.kind == "tokenizer" and e.m_is_range and e.available]
    if ranged:  # an any-M tokenizer gets a slider over its whole range, and the menu hides
        menu, slider = client.predict(ranged[0], api_name="/m_choices")
        e = registry.get(ranged[0])
        assert menu.get("visible") is False and slider.get("visible") is True
        assert (slider["minimum"], slider["maximum"]) == (e.supported_M[0], e.supported_M[-1])
        assert int(client.predict(7, api_name="/m_from_slider")["value"]) == 7
        client.predict("lloyd-patch-k256", api_name="/m_choices")   # leave the shared session as it was


def test_budget_endpoint(client):
    fig, summary = client.predict(4096, 10, 256, 1995, api_name="/budget")
    assert "overflows" in summary


def test_binds_loopback_only(app_server):
    assert app_server.startswith("http://127.0.0.1:")


def test_codebook_health_endpoint(client, kodak_path):
    fig, md = client.predict(handle_file(str(kodak_path)), "lloyd-patch-k256", 256, api_name="/codebook_health")
    assert "perplexity" in md and "distinct codes used" in md


def test_inpaint_endpoint(client, kodak_path):
    from museumtok.app import inpaint as ip

    if not ip.available()[0]:
        pytest.skip(ip.available()[1])
    message, original, masked, result, frames = client.predict(
        handle_file(str(kodak_path)), 0.25, 0.25, 0.75, 0.5, 4, 1.0, 0, api_name="/inpaint")
    assert "8 of 64 tokens masked" in message and len(frames) == 4
    bad = client.predict(handle_file(str(kodak_path)), 0.8, 0.25, 0.2, 0.5, 4, 1.0, 0, api_name="/inpaint")
    assert "left < right" in bad[0]
    assert "temperature 1" in message                                # the paper's decoding when not named
    review = client.predict(handle_file(str(kodak_path)), 0.25, 0.25, 0.75, 0.5, 4, 1.5, 0, "review",
                            api_name="/inpaint")
    assert "8 of 64 tokens masked" in review[0] and "max(0.1, 1.5·0.9^t)" in review[0]
