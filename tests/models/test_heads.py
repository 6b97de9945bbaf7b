import torch
from torch import nn

from equissl.models.heads import HypernetPredictor, projector


def test_hypernet_shapes_and_matrix_form():
    torch.manual_seed(0)
    p = HypernetPredictor(dim=16, action_dim=4)
    z, a = torch.randn(8, 16), torch.randn(8, 4)
    out = p(z, a)
    assert out.shape == (8, 16)
    assert p.matrix(a).shape == (8, 16, 16)
    # W(a) z with W materialised as in the reference (bias-free linear hypernetwork)
    ref = torch.bmm(p.matrix(a), z.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert sum(x.numel() for x in p.parameters()) == 16 * 16 * 4


def test_hypernet_is_linear_in_the_action():
    torch.manual_seed(1)
    p = HypernetPredictor(dim=12, action_dim=4)
    z, a, b = torch.randn(5, 12), torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(
        p(z, 2.0 * a - 3.0 * b), 2.0 * p(z, a) - 3.0 * p(z, b), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(p.matrix(a + b), p.matrix(a) + p.matrix(b))
    assert torch.count_nonzero(p(z, torch.zeros(5, 4))) == 0


def test_projector_layout():
    head = projector(256, [1024, 1024, 1024])
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    norms = [m for m in head.modules() if isinstance(m, nn.BatchNorm1d)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (256, 1024),
        (1024, 1024),
        (1024, 1024),
    ]
    assert len(norms) == 2 and linears[-1].bias is None
    assert head(torch.randn(4, 256)).shape == (4, 1024)
