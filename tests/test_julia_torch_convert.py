"""PyTorch modules → architectures with canonical weights (the Python half of the Flux conversions).

No Julia needed: each converted architecture is rebuilt by the PyTorch backend's ``build_module``
and must compute what the original module computes, and must be a valid architecture in a diagram.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from diagrammatic_learning import DiagramError, load
from diagrammatic_learning.diagram import Architecture, Layer
from diagrammatic_learning.julia import architecture_from_json, architecture_to_json, torch_to_architecture
from diagrammatic_learning.julia.torch_convert import architecture_to_torch
from diagrammatic_learning.torch_backend import build_module
from diagrammatic_learning.torch_backend import layer_modules as lm


def same_network(module: nn.Module, x: torch.Tensor) -> tuple[Architecture, dict]:
    """Convert, rebuild in float64, and check the rebuilt module computes the same outputs."""
    module = module.double().eval()
    arch, weights = torch_to_architecture(module)
    rebuilt = architecture_to_torch(arch, weights, torch.float64).eval()
    with torch.no_grad():
        want, got = module(x), rebuilt(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    return arch, weights


def valid_in_a_diagram(arch: Architecture, in_shape: list[int], out_shape: list[int], in_dtype: str = "float64"):
    doc = {"format": "learning-diagram", "format_version": "1.0",
           "objects": [{"name": "D", "kind": "data"},
                       {"name": "X", "kind": "tensor", "shape": in_shape, "dtype": in_dtype},
                       {"name": "Y", "kind": "tensor", "shape": out_shape, "dtype": "float64"}],
           "arrows": [{"name": "x", "kind": "data", "source": "D", "target": "X", "column": "x"},
                      {"name": "y", "kind": "data", "source": "D", "target": "Y", "column": "y"},
                      {"name": "f", "kind": "model", "source": "X", "target": "Y", "trainable": True,
                       "architecture": architecture_to_json(arch)}]}
    load(doc)


def test_a_multilayer_perceptron_with_nested_sequences():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4, bias=False), nn.Tanh(),
                           nn.Sequential(nn.Linear(4, 3), nn.Identity(), nn.LogSoftmax(dim=-1)))
    arch, weights = same_network(module, torch.randn(7, 6, dtype=torch.float64))
    assert [layer.type for layer in arch.layers] == ["linear", "relu", "linear", "tanh", "linear", "identity",
                                                    "log_softmax"]
    assert arch.layers[2].params == {"in_features": 5, "out_features": 4, "bias": False}
    assert sorted(weights) == ["layers.0.bias", "layers.0.weight", "layers.2.weight", "layers.4.bias",
                               "layers.4.weight"]
    np.testing.assert_array_equal(weights["layers.2.weight"], module[2].weight.detach().numpy())
    valid_in_a_diagram(arch, [6], [3])


def test_a_convolutional_network():
    torch.manual_seed(1)
    features = nn.Sequential(
        nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2), nn.GELU(),
        nn.MaxPool2d(2, padding=1), nn.Conv2d(4, 3, 3, padding="same", bias=False), nn.AvgPool2d((2, 1), padding=(1, 0)),
        nn.Flatten())
    x = torch.randn(3, 2, 9, 8, dtype=torch.float64)
    width = features.double()(x).shape[1]
    module = nn.Sequential(*features, nn.Dropout(0.3), nn.Linear(width, 5), nn.ELU(0.5), nn.LeakyReLU(0.2),
                           nn.Softplus(), nn.Sigmoid(), nn.Softmax(dim=-1))
    arch, weights = same_network(module, x)
    conv = arch.layers[0].params
    assert conv["padding"] == [1, 1, 0, 0] and conv["dilation"] == [1, 2] and conv["groups"] == 2
    assert arch.layers[3].params["padding"] == [1, 1, 1, 1]  # "same" for a 3×3 kernel
    assert arch.layers[2].params == {"kernel_size": [2, 2], "stride": [2, 2], "padding": [1, 1, 1, 1]}
    valid_in_a_diagram(arch, [2, 9, 8], [5])


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_same_padding_puts_the_odd_pixel_at_the_end():
    torch.manual_seed(2)
    module = nn.Sequential(nn.Conv2d(1, 2, (2, 4), padding="same", dilation=(1, 1)))
    arch, _ = same_network(module, torch.randn(2, 1, 5, 6, dtype=torch.float64))
    assert arch.layers[0].params["padding"] == [0, 1, 1, 2]


def test_a_sequence_model_with_the_backends_own_modules():
    torch.manual_seed(3)
    module = nn.Sequential(nn.Embedding(11, 4), lm.LSTM(4, 5, torch.float64), lm.LastStep(), nn.LayerNorm(5),
                           lm.Softplus(), lm.ELU(0.7))
    tokens = torch.randint(0, 11, (3, 6))
    arch, weights = same_network(module, tokens)
    assert [layer.type for layer in arch.layers] == ["embedding", "lstm", "last_step", "layer_norm", "softplus", "elu"]
    assert sorted(k for k in weights if k.startswith("layers.1.")) == [
        "layers.1.bias_hh_l0", "layers.1.bias_ih_l0", "layers.1.weight_hh_l0", "layers.1.weight_ih_l0"]
    valid_in_a_diagram(arch, [6], [5], in_dtype="int64")


def test_the_backends_modules_come_back_to_their_architecture():
    arch = Architecture(
        layers=(Layer("linear", {"in_features": 7, "out_features": 2}),),
        inputs=((Layer("conv2d", {"in_channels": 1, "out_channels": 1, "kernel_size": [2, 2],
                                  "padding": [1, 0, 0, 1]}), Layer("max_pool2d", {"kernel_size": [2, 2],
                                                                                   "padding": [0, 1, 1, 0]}),
                 Layer("flatten")), (Layer("relu"),)),
        combine="concat")
    module = build_module(arch, torch.float64)
    back, weights = torch_to_architecture(module)
    assert back.combine == "concat" and len(back.inputs) == 2
    assert back.inputs[0][0].params["padding"] == [1, 0, 0, 1]
    assert back.inputs[0][1].params == {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 1, 1, 0]}
    assert [layer.type for layer in back.inputs[1]] == ["relu"]
    state = module.state_dict()
    assert sorted(weights) == sorted(state)
    for k, v in weights.items():
        np.testing.assert_array_equal(v, state[k].numpy())
    again = architecture_from_json(architecture_to_json(back))
    assert again == back


@pytest.mark.parametrize("module, index", [
    (nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)), 1),
    (nn.Sequential(nn.GELU(approximate="tanh")), 0),
    (nn.Sequential(nn.Linear(2, 2), nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")), 1),
    (nn.Sequential(nn.Softmax(dim=1)), 0),
    (nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), 0),
    (nn.Sequential(nn.AvgPool2d(2, padding=1, count_include_pad=False)), 0),
    (nn.Sequential(nn.LSTM(3, 4)), 0),  # batch_first=False
])
def test_what_has_no_equivalent_is_invalid_layer(module, index):
    with pytest.raises(DiagramError) as info:
        torch_to_architecture(module)
    assert (info.value.code, info.value.pointer) == ("invalid-layer", f"/layers/{index}")
