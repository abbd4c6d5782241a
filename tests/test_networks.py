"""Network shapes, slot layout and the frozen transfer of a pre-trained body."""

import pytest
import torch

from prcrs_batch.modeling.networks import PrCRS, PrCRSConfig, build, slots_for
from prcrs_batch.offline.training import transfer_model
from prcrs_batch.task.panel import FACTOR_SETS, inputs_for


@pytest.mark.parametrize("arch", ["prcrs", "cnn", "transformer"])
@pytest.mark.parametrize("factor_set", list(FACTOR_SETS))
def test_output_shape_for_every_factor_set(arch, factor_set):
    inputs = inputs_for(factor_set)
    model = build(PrCRSConfig(arch=arch, input_slots=slots_for(inputs), d_model=16)).eval()
    values = torch.randn(5, len(inputs))
    observed = torch.rand(5, len(inputs)) > 0.3
    logits = model(values, observed)
    assert logits.shape == (5, 2)
    assert torch.isfinite(logits).all()


def test_pretraining_head_has_three_classes_and_features_are_pooled():
    model = PrCRS(PrCRSConfig(n_classes=3, d_model=16, readout="mean")).eval()
    values, observed = torch.randn(4, 42), torch.ones(4, 42, dtype=torch.bool)
    assert model(values, observed).shape == (4, 3)
    assert model.features(values, observed).shape == (4, 16)


def test_skip_readout_carries_pools_inputs_and_mask():
    inputs = inputs_for("cytokines")
    model = PrCRS(PrCRSConfig(input_slots=slots_for(inputs), d_model=16)).eval()
    values = torch.randn(2, len(inputs))
    observed = torch.ones(2, len(inputs), dtype=torch.bool)
    observed[0, 3] = False
    read = model.features(values, observed)
    assert read.shape == (2, 2 * 16 + 2 * len(inputs))
    assert read[0, 32 + 3] == 0 and read[0, 32 + len(inputs) + 3] == 0  # unobserved: no value
    torch.testing.assert_close(read[1, 32 : 32 + len(inputs)], values[1])


def test_unobserved_value_does_not_matter():
    model = PrCRS(PrCRSConfig(d_model=16)).eval()
    values = torch.randn(3, 42)
    observed = torch.ones(3, 42, dtype=torch.bool)
    observed[:, 7] = False
    other = values.clone()
    other[:, 7] = 99.0
    torch.testing.assert_close(model(values, observed), model(other, observed))


def test_inputs_land_in_their_panel_slots():
    inputs = inputs_for("cytokines")
    model = PrCRS(PrCRSConfig(input_slots=slots_for(inputs), d_model=16))
    x = model.scatter(torch.ones(1, len(inputs)), torch.ones(1, len(inputs), dtype=torch.bool))
    assert x.shape == (1, 2, 42)
    assert x[0, 1].nonzero().flatten().tolist() == list(slots_for(inputs))


def test_transfer_keeps_body_frozen_and_trains_only_the_head():
    body = PrCRS(PrCRSConfig(n_classes=3, d_model=16))
    model = transfer_model(body, inputs_for("biochem"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") for n in trainable)
    torch.testing.assert_close(model.embed.conv.weight, body.embed.conv.weight)
    assert model(torch.randn(2, 16), torch.ones(2, 16, dtype=torch.bool)).shape == (2, 2)
