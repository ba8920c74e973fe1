"""Learned quantizers (§4.2–4.4, Appendix B): STE, losses, EMA, dead codes, Gumbel, FSQ, LFQ."""
from __future__ import annotations

import math

import pytest
import torch

from museumtok.quantize import (
    FSQ, LFQ, GumbelQuantizer, QuantizerOutput, VectorQuantizer, ema_step, gumbel_softmax, kl_to_uniform, nearest_code,
    squared_distances, tau_schedule,
)

torch.set_num_threads(1)


def _vq_with_codes(codes: torch.Tensor, **kw) -> VectorQuantizer:
    q = VectorQuantizer(codes.shape[1], codes.shape[0], **kw)
    with torch.no_grad():
        q.embedding.copy_(codes)
        q.embed_sum.copy_(codes)
    return q


def _grid(vectors: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (1, D, 1, N), one row of the latent grid."""
    return vectors.T.reshape(1, vectors.shape[1], 1, vectors.shape[0]).contiguous()


# -- VectorQuantizer -----------------------------------------------------------------------------

def test_output_type_and_shapes():
    q = VectorQuantizer(8, 32)
    z = torch.randn(2, 8, 3, 5)
    out = q(z)
    assert isinstance(out, QuantizerOutput)
    assert out.z_q.shape == z.shape and out.indices.shape == (2, 3, 5) and out.indices.dtype == torch.int64
    assert set(out.losses) == {"codebook", "commitment"} and out.loss.dim() == 0
    assert {"perplexity", "usage", "dead_codes"} <= set(out.stats)
    assert q.codebook.shape == (32, 8)
    assert torch.equal(q.indices_to_codes(out.indices.flatten()), q.codebook[out.indices.flatten()])


def test_nearest_code_matches_brute_force_and_chunks(rng):
    z, e = torch.randn(500, 6, generator=rng), torch.randn(40, 6, generator=rng)
    brute = torch.cdist(z, e).argmin(1)
    assert torch.equal(nearest_code(z, e), brute)
    assert torch.equal(nearest_code(z, e, chunk_elems=40 * 7), brute)  # 7 rows per chunk
    d = squared_distances(z, e)
    assert torch.allclose(d, torch.cdist(z, e).pow(2), atol=1e-4)


def test_ste_gradient_is_identity(rng):
    q = VectorQuantizer(4, 16)
    z = torch.randn(2, 4, 3, 3, generator=rng, requires_grad=True)
    g = torch.randn(2, 4, 3, 3, generator=rng)
    (q(z).z_q * g).sum().backward()
    assert torch.equal(z.grad, g)


def test_codebook_and_commitment_losses_hand_made():
    codes = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    q = _vq_with_codes(codes, beta=0.25)
    v = torch.tensor([[0.2, 0.1], [0.8, 1.3]])        # nearest codes 0 and 1
    z = _grid(v).requires_grad_(True)
    out = q(z)
    assert out.indices.flatten().tolist() == [0, 1]
    # errors (0.2, 0.1) and (-0.2, 0.3): mean of the 4 squared entries
    expected = (0.04 + 0.01 + 0.04 + 0.09) / 4
    assert out.losses["codebook"].item() == pytest.approx(expected)
    assert out.losses["commitment"].item() == pytest.approx(expected)
    assert out.loss.item() == pytest.approx(expected + 0.25 * expected)
    out.loss.backward()
    # β sits on the commitment term: the encoder gets β·2(z − e)/n, the codebook 2(e − z)/n
    e_k = codes[[0, 1]]
    assert torch.allclose(z.grad, _grid(0.25 * 2 * (v - e_k) / 4))
    assert torch.allclose(q.embedding.grad, 2 * (e_k - v) / 4)


def test_ema_step_hand_made():
    codes = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    q = _vq_with_codes(codes, ema=True, decay=0.9, eps=1e-5)
    v = torch.tensor([[0.5, 0.0], [0.0, 0.5], [2.0, 3.0]])   # codes 0, 0, 1
    out = q(_grid(v))
    assert out.indices.flatten().tolist() == [0, 0, 1]
    assert not q.embedding.requires_grad
    # N_k = γ·1 + (1−γ) n_k with n = (2, 1); m_k = γ e_k + (1−γ) Σ z
    N = torch.tensor([0.9 + 0.1 * 2, 0.9 + 0.1 * 1])
    m = torch.tensor([[0.1 * 0.5, 0.1 * 0.5], [0.9 * 2 + 0.1 * 2, 0.9 * 2 + 0.1 * 3]])
    n, eps = 2.1, 1e-5
    N_smooth = (N + eps) / (n + 2 * eps) * n
    assert torch.allclose(q.cluster_size, N)
    assert torch.allclose(q.embed_sum, m)
    assert torch.allclose(q.codebook, m / N_smooth[:, None], atol=1e-6)
    # the EMA step reports the codebook loss but does not optimise it
    assert not out.losses["codebook"].requires_grad and out.loss.item() == pytest.approx(0.25 * out.losses["commitment"].item())


def test_ema_step_equals_review_alg1_at_steady_counts(rng):
    """With running counts equal to this batch's counts (and ε → 0) the full EMA is Appendix B, Alg. 1."""
    K, D = 8, 3
    codes = torch.randn(K, D, generator=rng)
    z = torch.randn(64, D, generator=rng)
    idx = nearest_code(z, codes)
    n_k = torch.bincount(idx, minlength=K).float()
    q = _vq_with_codes(codes, ema=True, decay=0.99, eps=1e-12)
    with torch.no_grad():
        q.cluster_size.copy_(n_k)
        q.embed_sum.copy_(codes * n_k[:, None])
    q(_grid(z))
    alg1, _ = ema_step(z, codes, gamma=0.99, eps=0.0)
    assert torch.allclose(q.codebook, alg1, atol=1e-5)


def test_perplexity_uniform_and_collapse():
    K = 8
    codes = torch.eye(K)
    q = _vq_with_codes(codes)
    uniform = q(_grid(codes.repeat(3, 1))).stats
    assert uniform["perplexity"] == pytest.approx(K) and uniform["usage"] == 1.0 and uniform["dead_codes"] == 0
    collapsed = q(_grid(codes[[2]].repeat(24, 1))).stats
    assert collapsed["perplexity"] == pytest.approx(1.0) and collapsed["usage"] == 1 / K and collapsed["dead_codes"] == K - 1


def _toy_usage(restart_dead_after: int, ema: bool) -> float:
    """16 tight clusters on a circle; every code starts in one far corner, so one code wins everything."""
    from museumtok.quantize.toy import fit_codebook_stream, ring_clusters, used_codes

    g = torch.Generator().manual_seed(0)
    K = 16
    q = VectorQuantizer(2, K, ema=ema, decay=0.9, restart_dead_after=restart_dead_after)
    start = torch.tensor([20.0, 20.0]) + 0.01 * torch.randn(K, 2, generator=g)
    fit_codebook_stream(q, steps=60, lr=0.5, init=start)
    held_out = ring_clusters(1024, clusters=K, generator=g)
    return used_codes(held_out, q.codebook).float().mean().item()


@pytest.mark.parametrize("ema", [False, True], ids=["loss", "ema"])
def test_dead_code_restart_lifts_usage(ema):
    without, with_restart = _toy_usage(0, ema), _toy_usage(5, ema)
    assert without < 0.25
    assert with_restart >= 0.75


def test_usage_term_hand_made_and_its_gradient_spreads_the_batch():
    codes = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])
    crowded = torch.tensor([[1.0, 1.0], [1.3, 0.9], [0.9, 1.3], [3.0, 3.0]])      # three nearest to code 0
    plain = _vq_with_codes(codes, ema=True)
    q = _vq_with_codes(codes, ema=True, usage_weight=0.5, usage_tau=2.0)
    plain.train(), q.train()
    z = _grid(crowded).requires_grad_(True)
    out = q(z)
    # by hand: d_nk, scaled by τ × the mean nearest distance; q̄ = mean softmax(−d / that); KL(q̄ ‖ U(4))
    d = ((crowded[:, None] - codes[None]) ** 2).sum(-1)
    q_bar = torch.softmax(-d / (2.0 * d.min(1).values.mean()), dim=1).mean(0)
    expected = torch.special.xlogy(q_bar, q_bar * 4).sum()
    assert torch.allclose(out.losses["usage_kl"], expected, atol=1e-6)
    assert torch.allclose(out.loss, plain(_grid(crowded)).loss + 0.5 * expected, atol=1e-7)
    # one gradient step on the usage term alone moves the crowded vectors away from code 0
    out.losses["usage_kl"].backward()
    moved = crowded - 0.5 * z.grad.reshape(2, 4).T
    assert q.usage_kl(moved, codes) < q.usage_kl(crowded, codes)
    # not in eval mode, and off by default; a bad weight is refused
    q.eval()
    assert "usage_kl" not in q(_grid(crowded)).losses
    assert "usage_kl" not in plain(_grid(crowded)).losses
    with pytest.raises(ValueError, match="usage_weight"):
        VectorQuantizer(2, 4, usage_weight=-1.0)


def test_kmeans_init_from_first_batch(rng):
    z = torch.randn(4, 3, 16, 16, generator=rng) * 3 + 10     # far from the N(0, 1) initial codes
    q = VectorQuantizer(3, 32, kmeans_init=True)
    assert not bool(q.initted)
    out = q(z)
    assert bool(q.initted) and out.stats["usage"] > 0.5
    flat = z.permute(0, 2, 3, 1).reshape(-1, 3)
    assert (q.codebook.mean(0) - flat.mean(0)).abs().max() < 1.0


def test_cosine_codes_are_unit_norm(rng):
    q = VectorQuantizer(5, 16, cosine=True)
    out = q(torch.randn(2, 5, 4, 4, generator=rng))
    assert torch.allclose(out.z_q.norm(dim=1), torch.ones(2, 4, 4), atol=1e-5)
    assert torch.allclose(q.codebook.norm(dim=1), torch.ones(16), atol=1e-5)


@pytest.mark.parametrize("cosine", [False, True], ids=["euclidean", "cosine"])
def test_agrees_with_vector_quantize_pytorch(rng, cosine):
    from vector_quantize_pytorch import VectorQuantize

    D, K = 16, 64
    ours = VectorQuantizer(D, K, cosine=cosine).eval()
    ref = VectorQuantize(dim=D, codebook_size=K, accept_image_fmap=True, rotation_trick=False,
                         use_cosine_sim=cosine).eval()
    with torch.no_grad():
        ref._codebook.embed.copy_(ours.codebook[None])
    z = torch.randn(3, D, 5, 7, generator=rng)
    out = ours(z)
    q_ref, idx_ref, _ = ref(z)
    assert torch.equal(out.indices, idx_ref)
    assert torch.allclose(out.z_q, q_ref, atol=1e-6)
    assert torch.allclose(ours.indices_to_codes(out.indices), ref.get_output_from_indices(idx_ref), atol=1e-6)


def test_ema_training_agrees_with_vector_quantize_pytorch(rng):
    """Three training steps: same indices, same running counts and the same codebook as their EMA."""
    from vector_quantize_pytorch import VectorQuantize

    D, K = 8, 32
    ours = VectorQuantizer(D, K, ema=True, decay=0.9, eps=1e-5)
    ref = VectorQuantize(dim=D, codebook_size=K, accept_image_fmap=True, rotation_trick=False, decay=0.9,
                         eps=1e-5).train()
    cb = ref._codebook
    with torch.no_grad():
        ours.embedding.copy_(cb.embed[0])
        ours.embed_sum.copy_(cb.embed_avg[0])
        ours.cluster_size.copy_(cb.cluster_size[0])
    for _ in range(3):
        z = torch.randn(2, D, 4, 4, generator=rng)
        out = ours(z)
        _, idx_ref, _ = ref(z)
        assert torch.equal(out.indices, idx_ref)
        assert torch.allclose(ours.cluster_size, cb.cluster_size[0], atol=1e-6)
        assert torch.allclose(ours.codebook, cb.embed[0], atol=1e-6)


def test_bad_inputs_have_clear_errors():
    q = VectorQuantizer(4, 8)
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        q(torch.randn(2, 3, 4, 4))
    with pytest.raises(IndexError, match=r"\[0, 8\)"):
        q.indices_to_codes(torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="decay"):
        VectorQuantizer(4, 8, decay=1.5)


def test_state_dict_round_trip(rng):
    q = VectorQuantizer(4, 8, ema=True, kmeans_init=True)
    q(torch.randn(2, 4, 8, 8, generator=rng))
    q2 = VectorQuantizer(4, 8, ema=True, kmeans_init=True)
    q2.load_state_dict(q.state_dict())
    assert bool(q2.initted) and torch.equal(q2.codebook, q.codebook)


# -- Gumbel ---------------------------------------------------------------------------------------

def test_gumbel_soft_samples_sum_to_one_and_sharpen(rng):
    logits = torch.randn(4, 10, 3, 3, generator=rng)
    g = -torch.log(-torch.log(torch.rand(logits.shape, generator=rng)))
    peaks = []
    for tau in (5.0, 1.0, 0.1, 0.01, 1e-4):
        w = gumbel_softmax(logits, tau, hard=False, dim=1, g=g)
        assert torch.allclose(w.sum(1), torch.ones(4, 3, 3), atol=1e-5)
        assert (w >= 0).all()
        peaks.append(w.max(1).values.min().item())
    assert peaks == sorted(peaks) and peaks[-1] > 0.999
    # the one-hot it approaches is the argmax of the perturbed logits
    assert torch.equal(gumbel_softmax(logits, 0.01, dim=1, g=g).argmax(1), (logits + g).argmax(1))


def test_gumbel_hard_is_exactly_one_hot_with_soft_gradient(rng):
    logits = torch.randn(2, 6, 4, 4, generator=rng, requires_grad=True)
    w = gumbel_softmax(logits, 1.0, hard=True, dim=1)
    assert set(w.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(w.detach().sum(1), torch.ones(2, 4, 4))
    (w * torch.randn(w.shape, generator=rng)).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_gumbel_quantizer(rng):
    assert GumbelQuantizer(12, 32, 8).hard is False          # DALL·E's dVAE trains on the relaxed sample
    q = GumbelQuantizer(12, 32, 8, tau=0.5, hard=True)        # the straight-through option
    h = torch.randn(2, 12, 4, 4, generator=rng, requires_grad=True)
    out = q(h)
    assert out.z_q.shape == (2, 8, 4, 4) and out.indices.shape == (2, 4, 4)
    assert set(out.losses) == {"kl"} and out.loss.item() == pytest.approx(5e-4 * out.losses["kl"].item())
    # hard path: each z_q is exactly one code, the sampled one
    assert torch.equal(out.z_q, q.indices_to_codes(out.indices))
    out.z_q.sum().backward()
    assert h.grad.abs().sum() > 0
    q.tau = 0.1
    assert q.tau == 0.1
    q.eval()  # deterministic: argmax of the logits
    a, b = q(h), q(h)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.indices, q.proj(h).argmax(1))


def test_gumbel_soft_path_is_a_mixture(rng):
    q = GumbelQuantizer(4, 5, 3, hard=False, tau=2.0)
    out = q(torch.randn(1, 4, 2, 2, generator=rng))
    assert not torch.allclose(out.z_q, q.indices_to_codes(out.indices))


def test_kl_to_uniform(rng):
    logits = torch.randn(3, 7, 2, 2, generator=rng)
    p = torch.distributions.Categorical(logits=logits.movedim(1, -1))
    u = torch.distributions.Categorical(logits=torch.zeros(3, 2, 2, 7))
    assert kl_to_uniform(logits).item() == pytest.approx(torch.distributions.kl_divergence(p, u).mean().item(), rel=1e-5)
    assert kl_to_uniform(torch.zeros(1, 7, 1, 1)).item() == pytest.approx(0.0, abs=1e-6)


def test_tau_schedule():
    assert tau_schedule(0, 1.0, 1 / 16, 100) == pytest.approx(1.0)
    assert tau_schedule(50, 1.0, 1 / 16, 100) == pytest.approx(0.25)
    assert tau_schedule(100, 1.0, 1 / 16, 100) == pytest.approx(1 / 16)
    assert tau_schedule(500, 1.0, 1 / 16, 100) == pytest.approx(1 / 16)
    assert tau_schedule(50, 1.0, 0.0625, 100, kind="cosine") == pytest.approx((1 + 0.0625) / 2)
    with pytest.raises(ValueError, match="exponential"):
        tau_schedule(1, kind="step")


def test_vq_round_trip_is_exact(rng):
    q = VectorQuantizer(6, 32).eval()
    out = q(torch.randn(2, 6, 5, 5, generator=rng))
    assert torch.equal(q.indices_to_codes(out.indices), out.z_q)


# -- FSQ ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("levels,dim", [([8, 5, 5, 5], None), ([2, 3, 4], 16), ([7, 5, 5, 5, 5], None)])
def test_fsq_round_trip_and_grid(rng, levels, dim):
    q = FSQ(levels, dim)
    assert q.codebook_size == math.prod(levels)
    z = 3 * torch.randn(2, q.dim, 6, 6, generator=rng)
    out = q(z)
    assert out.z_q.shape == z.shape and out.indices.shape == (2, 6, 6) and out.loss.item() == 0 and out.losses == {}
    assert torch.equal(q.indices_to_codes(out.indices), out.z_q)
    flat = out.z_q.permute(0, 2, 3, 1).reshape(-1, q.dim)
    assert torch.equal(q.indices_to_codes(out.indices.flatten()), flat)
    # the implicit codebook is the full grid, in index order, and every level of every channel is reachable
    grid = q.implicit_codebook
    assert torch.equal(q.codes_to_indices(grid), torch.arange(q.codebook_size))
    sweep = torch.linspace(-20, 20, 4001)[:, None].expand(-1, q.d)
    assert [q.quantize(sweep)[:, i].unique().numel() for i in range(q.d)] == levels


def test_fsq_ste_gradient_and_index_convention(rng):
    from vector_quantize_pytorch import FSQ as RefFSQ

    q = FSQ([8, 5, 5, 5])
    z = torch.randn(1, 4, 3, 3, generator=rng, requires_grad=True)
    q(z).z_q.sum().backward()
    assert (z.grad > 0).all()  # d round_ste(f(z))/dz = f'(z) > 0
    idx = torch.arange(q.codebook_size)
    assert torch.equal(q.indices_to_grid(idx), RefFSQ([8, 5, 5, 5]).indices_to_codes(idx))


def test_fsq_bad_levels():
    with pytest.raises(ValueError, match=">= 2"):
        FSQ([8, 1])


# -- LFQ ------------------------------------------------------------------------------------------

def test_lfq_round_trip_and_codes(rng):
    q = LFQ(256)
    z = torch.randn(2, 8, 5, 5, generator=rng)
    out = q(z)
    assert set(out.losses) == {"entropy", "commitment"}
    assert torch.equal(q.indices_to_codes(out.indices), out.z_q)
    assert set(out.z_q.unique().tolist()) <= {-1.0, 1.0}
    # index = the signs read as a binary number, first channel most significant
    bits = (z > 0).long()
    assert torch.equal(out.indices, sum(bits[:, i] << (7 - i) for i in range(8)))
    q2 = LFQ(64, dim=20)
    out2 = q2(torch.randn(2, 20, 3, 3, generator=rng))
    assert out2.z_q.shape == (2, 20, 3, 3) and torch.equal(q2.indices_to_codes(out2.indices), out2.z_q)


@pytest.mark.parametrize("inv_temperature", [100.0, 1.0])
def test_lfq_matches_vector_quantize_pytorch(rng, inv_temperature):
    from vector_quantize_pytorch import LFQ as RefLFQ

    q = LFQ(256, inv_temperature=inv_temperature)
    ref = RefLFQ(dim=8, codebook_size=256, entropy_loss_weight=0.1, commitment_loss_weight=0.25).train()
    z = 0.1 * torch.randn(2, 8, 5, 5, generator=rng)
    out = q(z)
    (z_ref, idx_ref, aux_ref), parts = ref(z, inv_temperature=inv_temperature, return_loss_breakdown=True)
    assert torch.equal(out.indices, idx_ref) and torch.equal(out.z_q, z_ref)
    assert out.stats["per_sample_entropy"] == pytest.approx(parts.per_sample_entropy.item(), rel=1e-4)
    assert out.stats["batch_entropy"] == pytest.approx(parts.batch_entropy.item(), rel=1e-4)
    assert out.loss.item() == pytest.approx(aux_ref.item(), rel=1e-4, abs=1e-6)


def test_lfq_entropy_terms_and_bound(rng):
    q = LFQ(16, inv_temperature=1.0)
    z = torch.randn(50, 4, generator=rng)
    per_sample, batch = q.entropy_terms(z)
    # brute force over the 16 codes: q(c|z) ∝ exp(−‖z − c‖²/τ)
    probs = torch.softmax(-torch.cdist(z, q.implicit_codebook).pow(2), dim=1)
    H = lambda p: -(p * p.log()).sum(-1)  # noqa: E731
    assert per_sample.item() == pytest.approx(H(probs).mean().item(), rel=1e-5)
    assert batch.item() == pytest.approx(H(probs.mean(0)).item(), rel=1e-5)
    q.exact_entropy_max_bits = 0  # per-bit upper bound
    assert q.entropy_terms(z)[1].item() >= batch.item() - 1e-6
    with pytest.raises(ValueError, match="power of two"):
        LFQ(100)


def _ddp_worker(rank: int, world: int, port: int, ema: bool, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)                       # the same initial module everywhere
    q = VectorQuantizer(4, 32, ema=ema, kmeans_init=True, restart_dead_after=2)
    torch.manual_seed(100 + rank)              # different data on each process
    for _ in range(4):
        q(torch.randn(2, 4, 4, 4) + rank)
    gathered = [torch.zeros(32, 4) for _ in range(world)]
    dist.all_gather(gathered, q.codebook.detach().contiguous())
    if rank == 0:
        queue.put(all(torch.equal(g, gathered[0]) for g in gathered))
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("ema", [True, False], ids=["ema", "loss"])
def test_codebooks_stay_identical_across_processes(ema):
    """k-means init, EMA and dead-code restart keep every data-parallel process on one codebook."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_ddp_worker, args=(2, port, ema, queue), nprocs=2, start_method="spawn")
    assert queue.get() is True


@pytest.mark.parametrize("seed", range(4))
def test_projected_fsq_and_lfq_codes_equal_forward_bitwise(seed):
    """With project_in/out (dim ≠ d), indices_to_codes must give exactly forward()'s z_q: both paths
    hand project_out the same memory layout (a mismatch here once made the LFQ round trip flaky)."""
    torch.manual_seed(seed)
    for q in (FSQ([8, 5, 5], dim=20), LFQ(64, dim=20)):
        out = q(torch.randn(2, 20, 3, 3))
        assert torch.equal(q.indices_to_codes(out.indices), out.z_q), type(q).__name__
