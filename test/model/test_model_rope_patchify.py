"""RoPE split / positions and the asymmetric patchify / unpatchify orders (spec §1.2, §2.3)."""
from __future__ import annotations

import torch

from lingbot_va_ros.model.rope import (
    action_grid_ids,
    apply_rope,
    rope_axis_dims,
    rope_frequencies,
    rope_table,
    video_grid_ids,
)
from lingbot_va_ros.model.transformer import (
    actions_to_tokens,
    patchify_video,
    tokens_to_actions,
    unpatchify_video,
)


def test_rope_head_dim_split():
    assert rope_axis_dims(128) == (44, 42, 42)
    assert rope_axis_dims(24) == (8, 8, 8)
    bf, bh, bw = rope_frequencies(128)
    assert (len(bf), len(bh), len(bw)) == (22, 21, 21)
    assert bf.dtype == torch.float64 and bf[0] == 1.0
    torch.testing.assert_close(bh[1], torch.tensor(10000.0 ** (-2 / 42), dtype=torch.float64))


def test_video_positions_are_frame_row_col_from_frame_start():
    g = video_grid_ids(2, 3, 4, frame_start=10)
    assert g.shape == (3, 24)
    # token index = f*(h*w) + i*w + j
    t = 1 * 12 + 2 * 4 + 3
    assert g[:, t].tolist() == [11, 2, 3]


def test_action_positions_are_fractional_with_row_col_minus_one():
    g = action_grid_ids(2, 16, frame_start=4)
    assert g.shape == (3, 32)
    assert torch.all(g[1:] == -1)
    torch.testing.assert_close(g[0, :16], 4 + torch.arange(1, 17) / 17.0)
    torch.testing.assert_close(g[0, 16:], 5 + torch.arange(1, 17) / 17.0)
    assert torch.all((g[0] > 4) & (g[0] < 6)) and torch.all(g[0, :16] < 5)


def test_rope_matches_complex_pair_rotation():
    """Adjacent pairs rotate as complex numbers by pos x base, table [f | h | w], same for every head."""
    d = 24
    grid = torch.cat([video_grid_ids(2, 2, 3, 5).float(), action_grid_ids(1, 3, 7)], dim=1)
    table = rope_table(grid, d)
    x = torch.randn(1, grid.shape[1], 2, d, dtype=torch.float64)
    bf, bh, bw = rope_frequencies(d)
    ang = torch.cat([grid[0, :, None].double() * bf, grid[1, :, None].double() * bh, grid[2, :, None].double() * bw], -1)
    ref = torch.view_as_real(torch.view_as_complex(x.reshape(1, -1, 2, d // 2, 2)) * torch.polar(torch.ones_like(ang), ang)[None, :, None]).flatten(3)
    got = apply_rope(x.float(), table)
    torch.testing.assert_close(got, ref.float(), atol=2e-6, rtol=1e-5)
    # head dims [0, 8) carry time: a pure time shift leaves the h/w part untouched
    g2 = grid.clone()
    g2[0] += 3
    got2 = apply_rope(x.float(), rope_table(g2, d))
    torch.testing.assert_close(got2[..., 8:], got[..., 8:])
    assert not torch.allclose(got2[..., :8], got[..., :8])


def test_patchify_is_channel_major_and_unpatchify_is_patch_major():
    c, f, h, w = 3, 2, 4, 6
    x = torch.arange(c * f * h * w, dtype=torch.float32).reshape(1, c, f, h, w)
    tok = patchify_video(x, (1, 2, 2))
    assert tok.shape == (1, f * (h // 2) * (w // 2), c * 4)
    fi, i, j = 1, 1, 2
    t = fi * (h // 2) * (w // 2) + i * (w // 2) + j
    for ch in range(c):
        for ph in range(2):
            for pw in range(2):
                assert tok[0, t, ch * 4 + ph * 2 + pw] == x[0, ch, fi, 2 * i + ph, 2 * j + pw]
    # output: proj[token, (ph*2+pw)*C + c] -> out[c, f, 2i+ph, 2j+pw]
    proj = torch.randn(1, tok.shape[1], 4 * c)
    out = unpatchify_video(proj, (1, 2, 2), f, h, w)
    assert out.shape == (1, c, f, h, w)
    for ch in range(c):
        for ph in range(2):
            for pw in range(2):
                assert out[0, ch, fi, 2 * i + ph, 2 * j + pw] == proj[0, t, (ph * 2 + pw) * c + ch]
    # the two orders differ: unpatchify(patchify(x)) is not x
    assert not torch.equal(unpatchify_video(tok, (1, 2, 2), f, h, w), x)


def test_action_tokens_round_trip_in_f_j_order():
    a = torch.randn(2, 30, 3, 4, 1)
    t = actions_to_tokens(a)
    assert t.shape == (2, 12, 30)
    assert torch.equal(t[1, 2 * 4 + 3], a[1, :, 2, 3, 0])
    assert torch.equal(tokens_to_actions(t, 3), a)
