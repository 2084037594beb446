"""Fixtures of the regression tests: torchvision's ResNet-50 state-dict layout, written from its published
architecture (not from fitlib's module), shared by the backbone's and SPIN's tests."""
import pytest


def _torchvision_resnet50_layout(num_classes=None) -> dict:
    """{name: shape} of torchvision's ``resnet50`` state dict, written from its published architecture
    (not from fitlib's module): a 7x7 stem conv of 64 channels and its BN, four layers of [3, 4, 6, 3]
    bottleneck blocks of widths 64/128/256/512 with expansion 4 (1x1, 3x3, 1x1 convs without bias, each
    followed by a BN; a 1x1 conv + BN shortcut in each layer's first block), then ``fc``."""
    out = {"conv1.weight": (64, 3, 7, 7)}

    def bn(name, c):
        out.update({f"{name}.weight": (c,), f"{name}.bias": (c,), f"{name}.running_mean": (c,),
                    f"{name}.running_var": (c,), f"{name}.num_batches_tracked": ()})

    bn("bn1", 64)
    cin = 64
    for li, (blocks, width) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512]), 1):
        for b in range(blocks):
            p = f"layer{li}.{b}"
            out[f"{p}.conv1.weight"] = (width, cin, 1, 1)
            bn(f"{p}.bn1", width)
            out[f"{p}.conv2.weight"] = (width, width, 3, 3)
            bn(f"{p}.bn2", width)
            out[f"{p}.conv3.weight"] = (4 * width, width, 1, 1)
            bn(f"{p}.bn3", 4 * width)
            if b == 0:
                out[f"{p}.downsample.0.weight"] = (4 * width, cin, 1, 1)
                bn(f"{p}.downsample.1", 4 * width)
            cin = 4 * width
    if num_classes:
        out["fc.weight"], out["fc.bias"] = (num_classes, 2048), (num_classes,)
    return out


@pytest.fixture(scope="session")
def torchvision_resnet50_layout():
    """``layout(num_classes=None) -> {name: shape}`` of torchvision's ``resnet50`` state dict."""
    return _torchvision_resnet50_layout
