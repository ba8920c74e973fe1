# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4.5 · VQ-GAN: sharper tokens with a discriminator
#
# **What you will learn**
#
# - the loss of VQ-GAN (Esser, Rombach & Ommer, *Taming Transformers for High-Resolution Image
#   Synthesis*, CVPR 2021, arXiv:2012.09841): reconstruction + perceptual + VQ terms + an adversarial
#   term from a **PatchGAN** discriminator (Isola et al., pix2pix, CVPR 2017, arXiv:1611.07004);
# - the **hinge losses** of discriminator and generator;
# - the **adaptive weight** λ = ‖∇_{G_L} L_rec‖ / (‖∇_{G_L} L_GAN‖ + δ) at the decoder's last layer,
#   and why it makes the GAN term's scale irrelevant (a slider);
# - what this project uses as the **perceptual term** when LPIPS weights are absent (1 − MS-SSIM —
#   said plainly, it is not a learned perceptual metric);
# - VQ-GAN next to VQ-VAE on a held-out image, when a `vqgan-f8-k1024` checkpoint is present.
#
# ```
# x ─Encoder─▶ z_e ─nearest e_k─▶ z_q ─Decoder─▶ x̂ ─PatchGAN─▶ logits (B,1,s,s), one per 70×70 patch
# L_G = |x − x̂|₁ + w_p·L_perc + L_VQ + λ·w_d·(−mean D(x̂))       L_D = ½(mean relu(1−D(x)) + mean relu(1+D(x̂)))
# ```

# %% [markdown]
# ## Tóm tắt
#
# Mục 4.5 giới thiệu VQ-GAN: một VQ-VAE được huấn luyện thêm với bộ phân biệt để ảnh tái tạo bớt mờ.
# Notebook cho thấy bộ phân biệt PatchGAN chấm điểm từng vùng 70×70 điểm ảnh, tính các tổn thất bản lề
# của bộ phân biệt và bộ sinh, và giải thích vì sao trọng số thích nghi $\lambda$ giữ cho số hạng đối
# kháng mạnh ngang số hạng tái tạo ở lớp cuối của bộ giải mã. Anh chị sẽ kiểm chứng điều đó bằng thanh
# trượt, biết rằng khi máy không có trọng số LPIPS thì tổn thất cảm nhận được thay bằng 1 − MS-SSIM,
# và so VQ-GAN với VQ-VAE trên một ảnh không dùng khi huấn luyện.

# %% [markdown]
# ## Thuật ngữ
#
# Thuật ngữ mà notebook này giới thiệu (ký hiệu theo Phụ lục A của bài tổng quan):
#
# | Tiếng Việt | English | ký hiệu |
# |---|---|---|
# | VQ-GAN | VQ-GAN | — |
# | bộ phân biệt | discriminator | $D_\psi$, $D(\cdot)$ |
# | bộ sinh | generator | $G$ |
# | bộ phân biệt PatchGAN | PatchGAN discriminator | — |
# | tổn thất đối kháng | adversarial loss | $\mathcal{L}_{\text{GAN}}$ |
# | tổn thất bản lề | hinge loss | — |
# | tổn thất cảm nhận | perceptual loss | $\mathcal{L}_{\text{perc}}$ |
# | trọng số thích nghi | adaptive weight | $\lambda = \lVert \nabla_{G_L} \mathcal{L}_{\text{rec}} \rVert / (\lVert \nabla_{G_L} \mathcal{L}_{\text{GAN}} \rVert + \delta)$ |
# | lớp cuối của bộ giải mã | decoder's last layer | $G_L$ |
# | độ sắc nét | sharpness | — |
#
# Bảng đầy đủ, kèm giải thích và ghi chú về ký hiệu: [docs/glossary.md](../docs/glossary.md).

# %%
import math

import plotly.graph_objects as go
import torch
from ipywidgets import FloatLogSlider

from museumtok.data.dataset import eval_batch
from museumtok.metrics.image import ms_ssim, psnr, sharpness_ratio
from museumtok.metrics.perceptual import lpips_available
from museumtok.models.discriminator import (PatchDiscriminator, hinge_d_loss, hinge_g_loss, patch_output_side,
                                            receptive_field)
from museumtok.models.vqgan import VQGAN, VQGANConfig, adaptive_weight, perceptual_loss, perceptual_name
from museumtok.paths import CHECKPOINT_DIR, fast_mode
from museumtok.viz import image_row_figure, interact_or_call

FAST = fast_mode()
torch.set_num_threads(1)
torch.manual_seed(0)

# %% [markdown]
# ## 1. The PatchGAN discriminator judges patches, not images
#
# Three stride-2 4×4 convolutions and two stride-1 ones: each output logit sees a 70×70 px patch,
# and a 256 px input gives a 30×30 grid of real/fake judgements (pix2pix's "70×70 PatchGAN").

# %%
D = PatchDiscriminator(3, channels=32, n_layers=3)
for S in (64, 128, 256):
    print(f"input {S}×{S} px -> logits {tuple(D(torch.rand(1, 3, S, S)).shape)}")
assert D(torch.rand(1, 3, 256, 256)).shape[-1] == patch_output_side(256, 3) == 30
assert receptive_field(3) == 70
print("receptive field of one logit:", receptive_field(3), "px")

# %% [markdown]
# ## 2. Hinge losses
#
# The discriminator stops being pushed once real logits exceed +1 and fake ones fall below −1;
# the generator simply raises D(x̂).

# %%
d = torch.linspace(-3, 3, 121)
fig = go.Figure([go.Scatter(x=d, y=torch.relu(1 - d), name="real: relu(1 − D(x))"),
                 go.Scatter(x=d, y=torch.relu(1 + d), name="fake: relu(1 + D(x̂))"),
                 go.Scatter(x=d, y=-d, name="generator: −D(x̂)", line={"dash": "dot"})])
fig.update_layout(xaxis_title="logit D(·)", yaxis_title="loss", height=320, margin={"t": 30})
real, fake = torch.tensor([1.5, 0.2]), torch.tensor([-0.5, -2.0])
assert math.isclose(hinge_d_loss(real, fake).item(), 0.5 * ((0 + 0.8) / 2 + (0.5 + 0) / 2), rel_tol=1e-6)
assert math.isclose(hinge_g_loss(fake).item(), 1.25, rel_tol=1e-6)
fig

# %% [markdown]
# ## 3. The perceptual term on this machine
#
# VQ-GAN's L_rec uses LPIPS, which needs ImageNet-pretrained AlexNet/VGG weights. Where they are not
# cached (as on the project's offline machines) we use **1 − MS-SSIM** instead — a multi-scale
# structural similarity, not a learned perceptual distance. The model records which one it used.

# %%
ok, reason = lpips_available()
print("LPIPS available:", ok, "—", reason)
print("perceptual term used with perceptual='auto':", perceptual_name("auto"))
x, _ = eval_batch("kodak", 64, limit=2)
noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
assert abs(perceptual_loss(noisy, x, "1-ms-ssim").item() - (1 - ms_ssim(noisy, x).mean().item())) < 1e-6

# %% [markdown]
# ## 4. The adaptive weight λ
#
# λ = ‖∇_{G_L} L_rec‖ / (‖∇_{G_L} L_GAN‖ + δ) with G_L the decoder's last convolution. Multiply the
# GAN loss by any constant c: λ shrinks by c, so the adversarial gradient at G_L keeps the size of the
# reconstruction gradient. The slider scales L_GAN; the printed norms of ∇L_rec and ∇(λ·c·L_GAN) stay equal.

# %%
tiny = VQGAN(VQGANConfig(channels=(16, 32, 32, 32), codebook_size=64, dim=8, disc_channels=16,
                         perceptual="ms_ssim", kmeans_init=False, disc_start=0))
out = tiny.generator_step(x, step=0)
G_L = tiny.last_layer()
g_rec = torch.autograd.grad(out.losses["rec"], G_L, retain_graph=True)[0]
g_gan = torch.autograd.grad(out.losses["g_loss"], G_L, retain_graph=True)[0]
lam_by_hand = g_rec.norm() / (g_gan.norm() + tiny.config.delta)
print({k: round(float(v), 4) for k, v in out.losses.items()})
assert math.isclose(out.losses["lambda_adaptive"].item(), lam_by_hand.item(), rel_tol=1e-5)


@interact_or_call(c=FloatLogSlider(value=1.0, base=10, min=-3, max=3, step=0.25, description="scale c of L_GAN"))
def show_lambda(c=1.0):
    lam = adaptive_weight(out.losses["rec"], c * out.losses["g_loss"], G_L, delta=0.0)
    adv = torch.autograd.grad(lam * c * out.losses["g_loss"], G_L, retain_graph=True)[0]
    assert math.isclose(adv.norm().item(), g_rec.norm().item(), rel_tol=1e-4)
    return f"λ = {lam.item():.4g};  ‖∇L_rec‖ = {g_rec.norm().item():.4g},  ‖∇(λ·c·L_GAN)‖ = {adv.norm().item():.4g}"


# %%
show_lambda(c=10.0)      # the callback once more, with other values

# %% [markdown]
# ## 5. VQ-GAN next to VQ-VAE
#
# When the bundled `vqgan-f8-k1024` exists (fine-tuned from `vqvae-f8-k1024`, see its model card) both
# tokenize the same held-out image at 128 px (M = 256 tokens). "sharpness" is the high-frequency
# (Laplacian) energy of the reconstruction over the original's: below 1 means blurrier.

# %%
from museumtok.models.vqvae import VQVAE  # noqa: E402

img, _ = eval_batch("kodak", 128, limit=1)
panels = [("original", img[0])]
for name, cls in (("vqvae-f8-k1024", VQVAE), ("vqgan-f8-k1024", VQGAN)):
    path = CHECKPOINT_DIR / name
    if not (path / "model.safetensors").exists():
        print(f"{name}: no checkpoint here (train it with `python -m museumtok train vqgan`)")
        continue
    m = cls.from_pretrained(str(path)).eval()
    x_hat = m.decode_indices(m.encode_indices(img))
    panels.append((f"{name}: {psnr(img, x_hat).item():.1f} dB, sharpness {sharpness_ratio(x_hat, img).item():.2f}",
                   x_hat[0]))
image_row_figure(panels)

# %% [markdown]
# **Takeaways.** The discriminator sees 70×70 patches and penalises blur locally; the hinge loss stops
# pushing once a margin is met. λ makes the adversarial term as strong, at the decoder's last layer,
# as the reconstruction term, whatever its raw scale — that is why VQ-GAN trains without hand-tuning
# the GAN weight. Without LPIPS weights our "perceptual" term is MS-SSIM: structurally motivated, but
# it does not know what textures people notice.
