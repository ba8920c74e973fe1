"""Evaluation: held-out metrics, rate–distortion, the bench, generative comparisons and the guide's chat.

    metrics        image_metrics (8-bit rounding + PSNR/SSIM/MS-SSIM/LPIPS), evaluate_tokenizer,
                   measure_codec (the one codec-measuring loop), codec_rd_points, mean_rd_curve
    rd             `museumtok eval rd`: RD curves with real bitstreams, BD-rate / BD-PSNR (Bjøntegaard)
    plot           the one RD plotter (plotly HTML and matplotlib PNG from the same panels)
    bench          `museumtok bench`: plan the rows from the registry, fingerprint, measure, write bench.json
    bench_report   bench.md, the README summary and the bench's RD plots, from bench.json alone
    errors         notebook 09's error analysis (worst images and why, token patches, collapse)
    generative     MaskGIT against the autoregressive prior on held-out tokens (§4.6)
    chat           `museumtok eval chat`: the museum guide on held-out questions

Submodules are imported on use (``from museumtok.eval.rd import run_rd``), so importing one does not
pull in the others. Checkpoints are identified by :func:`museumtok.fingerprint.checkpoint_fingerprint`.
"""
