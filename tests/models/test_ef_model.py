import pytest
import torch
import torchvision

from echolite import EcholiteError
from echolite.models.ef import POOLINGS, EFRegressor, load_pretrained_backbone


@pytest.mark.parametrize("pooling", sorted(POOLINGS))
def test_shape_finite_and_every_parameter_gets_a_gradient(pooling):
    torch.manual_seed(0)
    model = EFRegressor(pooling, (30.0,) * 3, (40.0,) * 3, ef_mean=56.0, ef_std=12.0)
    x = torch.rand(2, 8, 3, 112, 112) * 255
    y = model(x)
    assert y.shape == (2,) and torch.isfinite(y).all()
    ((y - 60.0) ** 2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_untrained_model_predicts_about_the_train_mean():
    torch.manual_seed(0)
    model = EFRegressor("mean", (30.0,) * 3, (40.0,) * 3, ef_mean=56.0, ef_std=12.0)
    with torch.no_grad():  # train mode: BN uses batch statistics, as in the first steps
        y = model(torch.rand(4, 8, 3, 112, 112) * 255)
    assert (y - 56.0).abs().max() < 12.0
    assert model.head.bias.item() == 0.0


def test_meanstd_pool_sees_the_spread_mean_pool_does_not():
    flat = torch.ones(1, 4, 3)
    swing = torch.tensor([[[0.0] * 3, [2.0] * 3, [0.0] * 3, [2.0] * 3]])
    assert torch.equal(POOLINGS["mean"]()(flat), POOLINGS["mean"]()(swing))
    out = POOLINGS["meanstd"]()(swing)
    assert out.shape == (1, 6) and torch.allclose(out[0, 3:], torch.ones(3), atol=1e-3)


def test_pretrained_loads_local_state_dict(tmp_path):
    src = torchvision.models.resnet18(weights=None)
    torch.save(src.state_dict(), tmp_path / "r18.pth")
    model = EFRegressor("mean")
    load_pretrained_backbone(model, tmp_path / "r18.pth")
    assert torch.equal(model.backbone.conv1.weight, src.conv1.weight)
    with pytest.raises(EcholiteError, match="file not found"):
        load_pretrained_backbone(model, tmp_path / "nope.pth")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(EcholiteError, match="nor a torchvision resnet18"):
        load_pretrained_backbone(model, tmp_path / "bad.pth")


def test_unknown_pooling_is_rejected():
    with pytest.raises(EcholiteError, match="pooling must be one of"):
        EFRegressor("attention")
