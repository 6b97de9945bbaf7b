"""Sequence heads of seq-JEPA (equissl/models/sequence.py): the action embedding, the token
layout and the aggregate transformer, against the reference's layout (hafezgh/seq-jepa
src/models.py)."""

import pytest
import torch
from torch import nn

from equissl.models.sequence import ActionEmbedding, AggregateTransformer, sequence_tokens


def test_action_embedding_is_bias_free_linear_then_non_affine_batchnorm():
    emb = ActionEmbedding(4)
    assert emb.dim == 128
    assert emb.linear.bias is None and emb.linear.weight.shape == (128, 4)
    assert isinstance(emb.norm, nn.BatchNorm1d) and not emb.norm.affine
    assert emb.norm.weight is None and emb.norm.bias is None
    assert sorted(n for n, _ in emb.named_parameters()) == ["linear.weight"]


def test_action_embedding_normalises_over_every_position_of_the_batch():
    torch.manual_seed(0)
    emb = ActionEmbedding(6, dim=8).train()
    a = torch.randn(5, 3, 6)
    out = emb(a)
    assert out.shape == (5, 3, 8)
    lin = a.reshape(15, 6) @ emb.linear.weight.T  # one BN batch of B·M = 15 actions
    expected = (lin - lin.mean(0)) / torch.sqrt(lin.var(0, unbiased=False) + emb.norm.eps)
    torch.testing.assert_close(out.reshape(15, 8), expected)
    emb.eval()  # running statistics: each action embedded on its own
    torch.testing.assert_close(emb(a[:2]), emb(a)[:2])


def test_tokens_are_encoding_then_action_with_the_last_slot_zero():
    z = torch.randn(2, 3, 5)
    between = torch.randn(2, 2, 4)
    tokens = sequence_tokens(z, between)
    assert tokens.shape == (2, 3, 9)
    torch.testing.assert_close(tokens[..., :5], z)  # [z_i ‖ emb(a_i)]: encoding first
    torch.testing.assert_close(tokens[:, :2, 5:], between)  # a_i: view i -> i + 1
    assert torch.equal(tokens[:, 2, 5:], torch.zeros(2, 4))  # the last observed token
    single = sequence_tokens(z[:, :1], between[:, :0])  # one view: no action, a zero slot
    assert torch.equal(single[..., 5:], torch.zeros(2, 1, 4))
    with pytest.raises(ValueError, match="3 observations need 2 actions"):
        sequence_tokens(z, between[:, :1])


def test_aggregate_transformer_has_the_published_shape():
    agg = AggregateTransformer(640)
    assert agg.aggregate_token.shape == (1, 1, 640) and torch.equal(
        agg.aggregate_token, torch.zeros(1, 1, 640)
    )
    layers = agg.encoder.layers
    assert len(layers) == 3
    for layer in layers:
        assert layer.self_attn.num_heads == 4 and layer.self_attn.embed_dim == 640
        assert layer.linear1.out_features == 4 * 640  # MLP ratio 4
        assert not layer.norm_first  # post-norm layers
        assert layer.self_attn.batch_first
    assert isinstance(agg.encoder.norm, nn.LayerNorm)  # the final LayerNorm
    # no positional embedding: the only parameters are the token and the encoder's
    top = {n.split(".")[0] for n, _ in agg.named_parameters()}
    assert top == {"aggregate_token", "encoder"}
    with pytest.raises(ValueError, match="divisible by 4"):
        AggregateTransformer(10)


def test_aggregate_is_the_output_at_the_prepended_token():
    torch.manual_seed(0)
    agg = AggregateTransformer(8, heads=2, layers=1).eval()
    with torch.no_grad():
        agg.aggregate_token.normal_()
    tokens = torch.randn(3, 4, 8)
    full = agg.encoder(torch.cat((agg.aggregate_token.expand(3, -1, -1), tokens), dim=1))
    torch.testing.assert_close(agg(tokens), full[:, 0])


def test_permuting_tokens_with_their_actions_leaves_the_aggregate_unchanged():
    torch.manual_seed(0)
    agg = AggregateTransformer(12, heads=4, layers=2).eval()
    z, between = torch.randn(4, 5, 8), torch.randn(4, 4, 4)
    tokens = sequence_tokens(z, between)
    perm = torch.tensor([3, 0, 4, 2, 1])
    torch.testing.assert_close(agg(tokens[:, perm]), agg(tokens), atol=1e-5, rtol=1e-5)
    # but the content matters: another action changes it
    other = sequence_tokens(z, between.flip(1))
    assert not torch.allclose(agg(other), agg(tokens), atol=1e-4)
