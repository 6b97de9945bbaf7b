"""The EquiCaps capsule projector: shapes, activations, routing, and the self-routing
formula of SR-CapsNet (AberdeenML/EquiCaps src/sr_capsnet.py) written out as loops."""

import pytest
import torch

from equissl.models.capsules import CapsuleProjector, SelfRouting


def randomised(layer: SelfRouting, seed: int = 0) -> SelfRouting:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (layer.W1, layer.W2, layer.b2):
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return layer


@pytest.mark.parametrize("pose_size, map_size", [(3, (2, 3)), (4, (1, 1))])
def test_projector_shapes_and_activations(pose_size, map_size):
    torch.manual_seed(0)
    proj = CapsuleProjector(8, map_size, num_caps=5, pose_size=pose_size)
    randomised(proj.routing)
    act, pose = proj(torch.randn(6, 8, *map_size))
    assert act.shape == (6, 5) and pose.shape == (6, 5, pose_size, pose_size)
    assert proj.routing.num_in == map_size[0] * map_size[1] * 5
    assert ((act > 0) & (act < 1)).all()
    # Σ_j a_j = Σ_i a_i Σ_j r_ij / Σ_i a_i = 1: the activations are a distribution
    torch.testing.assert_close(act.sum(-1), torch.ones(6))
    with pytest.raises(ValueError, match="maps"):
        proj(torch.randn(2, 8, 4, 4))


def test_routing_is_a_softmax_over_outputs_and_uniform_at_init():
    layer = SelfRouting(num_in=7, num_out=4, in_dim=9, out_dim=9)
    pose = torch.randn(3, 7, 9)
    assert (layer.W2 == 0).all() and (layer.b2 == 0).all()
    torch.testing.assert_close(layer.routing(pose), torch.full((3, 7, 4), 0.25))
    r = randomised(layer).routing(pose)
    torch.testing.assert_close(r.sum(-1), torch.ones(3, 7))
    assert r.std() > 0.05


def test_self_routing_matches_the_formula():
    layer = randomised(SelfRouting(num_in=5, num_out=3, in_dim=4, out_dim=2), seed=1)
    act, pose = torch.rand(2, 5) * 0.9 + 0.05, torch.randn(2, 5, 4)
    got_a, got_pose = layer(act, pose)
    for b in range(2):
        for j in range(3):
            logits = [layer.W2[i] @ pose[b, i] + layer.b2[i] for i in range(5)]
            r = [torch.softmax(lg, dim=0)[j] for lg in logits]
            ar = [act[b, i] * r[i] for i in range(5)]
            torch.testing.assert_close(got_a[b, j], sum(ar) / act[b].sum())
            vote = [layer.W1[i, j] @ pose[b, i] for i in range(5)]
            torch.testing.assert_close(
                got_pose[b, j], sum(ar[i] * vote[i] for i in range(5)) / sum(ar)
            )


def test_pose_transform_init_follows_kaiming_on_the_reference_layout():
    layer = SelfRouting(num_in=2048, num_out=32, in_dim=16, out_dim=16)
    std = (2 / (32 * 16 * 16)) ** 0.5  # kaiming_normal_ fan_in of [N, K·D, C] = K·D·C
    assert abs(layer.W1.std().item() / std - 1) < 0.01


def test_activation_checkpoint_changes_nothing_but_memory():
    torch.manual_seed(0)
    plain = CapsuleProjector(8, (2, 2), num_caps=4, pose_size=3)
    randomised(plain.routing)
    ckpt = CapsuleProjector(8, (2, 2), num_caps=4, pose_size=3, activation_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(3, 8, 2, 2)
    grads = []
    for proj in (plain, ckpt):
        act, pose = proj(x)
        (act.square().sum() + pose.sin().sum()).backward()
        grads.append([p.grad.clone() for p in proj.parameters()])
    for g1, g2 in zip(*grads, strict=True):
        torch.testing.assert_close(g1, g2)
