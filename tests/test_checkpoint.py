"""Checkpoint folders name their class (museumtok.checkpoint); museumtok.load takes a registry name, a
folder or a Hub id."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import museumtok
from museumtok import checkpoint as C
from museumtok.paths import CHECKPOINT_DIR


def _tiny_vqvae():
    from museumtok.models.vqvae import VQVAE, VQVAEConfig

    torch.manual_seed(0)
    return VQVAE(VQVAEConfig(f=4, channels=(8, 16), dim=4, codebook_size=16, kmeans_init=False)).eval()


def test_every_bundled_checkpoint_names_a_class_that_resolves():
    folders = [d for d in sorted(CHECKPOINT_DIR.iterdir()) if d.is_dir()]
    assert folders
    for d in folders:
        name = C.class_name(d)
        assert name in C.CLASSES, d.name
        cls = C.resolve(name)
        assert cls.__name__ == name and hasattr(cls, "from_pretrained"), d.name
    for name in C.CLASSES:                       # the table follows the code when a class moves
        if name == "CompressAITrained":          # CompressAI's network inside our Codec: its own config.json writer
            cls = C.resolve(name)
            assert callable(cls.save_pretrained) and callable(cls.from_pretrained)
        elif name != "PeftModel":
            assert issubclass(C.resolve(name), C.HubMixin), name


def test_every_bundled_checkpoint_loads_from_its_folder():
    """The stamped config.json is read by every loader (the config dataclasses drop the key)."""
    from museumtok.registry import _wrappers

    wrappers = _wrappers()
    for d in sorted(CHECKPOINT_DIR.iterdir()):
        if not d.is_dir() or d.name.startswith("sft-"):
            continue
        obj = museumtok.load(str(d))
        cls = C.resolve(C.class_name(d))
        assert type(obj) is wrappers.get(cls, cls), d.name


def test_save_pretrained_names_the_class_and_every_loader_ignores_the_key(tmp_path):
    from museumtok.models.vqvae import VQVAE

    model = _tiny_vqvae()
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert next(iter(cfg)) == "_class_name" and cfg["_class_name"] == "VQVAE"
    again = VQVAE.from_pretrained(str(tmp_path)).eval()           # the config dataclass ignores the key
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(again.encode_indices(x), model.encode_indices(x))
    with pytest.raises(C.CheckpointError, match="CLASSES"):
        C.stamp_class(tmp_path, "NotAModel")

    class VQVAE(model.__class__):                                 # one's own subclass, not in the table:
        pass                                                      # saved as before, no misleading name

    VQVAE(model.config).save_pretrained(tmp_path / "sub")
    assert "_class_name" not in json.loads((tmp_path / "sub" / "config.json").read_text())


def test_load_accepts_a_local_folder_and_gives_what_the_registry_gives(tmp_path):
    shutil.copytree(CHECKPOINT_DIR / "vqvae-f8-k1024", tmp_path / "mine")
    tok = museumtok.load(str(tmp_path / "mine"))
    ref = museumtok.load("vqvae-f8-k1024")
    assert type(tok) is type(ref)                                   # the tokenizer, not the bare network
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(tok.encode_tensor(x, 64), ref.encode_tensor(x, 64))
    codec = museumtok.load(str(CHECKPOINT_DIR / "hyperprior-q1"))
    assert type(codec).__name__ == "ScaleHyperprior" and not codec.training


def test_load_refuses_an_unstamped_folder_and_an_adapter_with_a_clear_message(tmp_path):
    _tiny_vqvae().save_pretrained(tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    cfg.pop("_class_name")
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(C.CheckpointError, match="does not name its class"):
        museumtok.load(str(tmp_path / "old"))
    with pytest.raises(C.CheckpointError, match="PeftModel.from_pretrained"):
        museumtok.load(str(CHECKPOINT_DIR / "sft-smollm2-lloyd-k1024"))


def test_load_fetches_a_hub_id(tmp_path, monkeypatch):
    import huggingface_hub

    seen = {}

    def fake_download(repo_id, revision=None, **kw):
        seen["repo"] = repo_id
        shutil.copytree(CHECKPOINT_DIR / "lloyd-patch-k256", tmp_path / "snap")
        return str(tmp_path / "snap")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    tok = museumtok.load("someone/lloyd-patch-k256")
    assert seen["repo"] == "someone/lloyd-patch-k256" and type(tok).__name__ == "LloydPatchTokenizer"
    assert tok.K == 256


def test_load_of_a_hub_id_offline_says_what_to_do(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import OfflineModeIsEnabled

    def offline(repo_id, **kw):
        raise OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline mode is enabled.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(C.CheckpointError, match=r"cannot reach the Hugging Face Hub to fetch owner/name: .*offline"
                                                r".*pass the folder"):
        museumtok.load("owner/name")
    with pytest.raises(KeyError, match="unknown tokenizer"):       # neither a folder nor a Hub id
        museumtok.load("no-such-name")


def test_load_of_a_hub_id_with_hf_hub_offline(monkeypatch):
    """The real snapshot_download with HF_HUB_OFFLINE=1 (nothing cached): the same clear message."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(C.CheckpointError, match="cannot reach the Hugging Face Hub to fetch museumtok-test/absent"):
        museumtok.load("museumtok-test/absent")
