"""The roofline formula against the FLOPs torch really dispatches in one steady-state chunk of the real code."""
from __future__ import annotations

import torch

from lingbot_va_ros.model import roofline
from lingbot_va_ros.model.transformer import WanTransformer3DModel
from lingbot_va_ros.model.world_model import LingBotVAWorldModel

from test_model_world_model import TINY, Inputs, make_cfg, C, F, H, W


def _steady_state_world_model(attn_window: int):
    torch.manual_seed(0)
    model = WanTransformer3DModel(**TINY).eval().requires_grad_(False)
    cfg = make_cfg(attn_window=attn_window, num_inference_steps=4, action_num_inference_steps=6)
    wm = LingBotVAWorldModel(model, cfg)
    x = Inputs()
    wm.reset(*x.prompt())
    r = wm.infer(x.init(), generator=torch.Generator().manual_seed(1))
    wm.ground(x.obs(0), r.actions)
    while wm.cache_fill() < 1.0:   # history up to capacity: every forward then attends the full cache
        r = wm.infer(generator=torch.Generator().manual_seed(2))
        wm.ground(torch.randn(C, F, H, W), r.actions)
    return model, cfg, wm


def _chunk(wm):
    r = wm.infer(generator=torch.Generator().manual_seed(3))
    wm.ground(torch.randn(C, F, H, W), r.actions)


def test_the_formula_matches_the_flops_dispatched_by_a_real_steady_state_chunk():
    model, cfg, wm = _steady_state_world_model(attn_window=12)
    with torch.no_grad():
        counted, by_op = roofline.count_flops(_chunk, wm)
    assert any("scaled_dot_product" in op for op in by_op), by_op    # attention is counted, not only matmuls
    dims = roofline.Dims.of(model)
    dims = roofline.Dims(**{**dims.__dict__, "text_rows": 5})        # the test prompt's rows
    forwards = roofline.chunk_forwards(cfg, wm.cache.capacity, (H // 2) * (W // 2), batch=2)
    assert len(forwards) == 4 + 1 + 6 + 1 + 2
    predicted = sum(roofline.forward_flops(f, dims) for f in forwards)
    assert abs(predicted - counted) / counted < 0.05, (predicted, counted, by_op)


def test_floor_is_per_forward_max_of_compute_and_memory():
    dims = roofline.Dims(**roofline.FULL_SIZE)
    f_video = roofline.Forward(2, 240, 9792, True)
    f_action = roofline.Forward(2, 32, 9792, False)
    peak, bw = roofline.DEVICES["H100 SXM (bf16)"]
    video, action = (roofline.chunk_floor([f], dims, peak, bw) for f in (f_video, f_action))
    assert video.compute_bound_share == 1.0 and action.compute_bound_share == 0.0   # as the docs explain
    both = roofline.chunk_floor([f_video, f_action], dims, peak, bw)
    assert abs(both.seconds - (video.seconds + action.seconds)) < 1e-12
    # the weights alone: 30 layers of a 3072-wide block ~ 4.4 B parameters in the blocks, bf16
    assert 8.0e9 < roofline.forward_bytes(roofline.Forward(1, 1, 0, False), dims) - 30 * 2 * 512 * 3072 * 2 < 9.5e9
