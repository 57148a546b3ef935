"""`xadbench weights export`: torchvision's VGG11-BN features, from torchvision's cache, as a
--weights file."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse

import torch
from torchvision.models import VGG11_BN_Weights
from typer.testing import CliRunner

from xadbench.backbones import vgg11_bn_features, vgg_features
from xadbench.cli import app


def test_export_writes_the_cached_torchvision_features(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    # Stands in for the ImageNet file in torchvision's cache: random features plus a classifier
    # entry (the real file's classifier is 0.5 GB), which the export must leave out.
    original = {f"features.{k}": v for k, v in vgg_features().state_dict().items()} | {"classifier.0.bias": torch.ones(3)}
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(VGG11_BN_Weights.IMAGENET1K_V1.url).path)
    cached.parent.mkdir(parents=True)
    torch.save(original, cached)
    out = tmp_path / "vgg11_bn_features.pt"
    done = CliRunner().invoke(app, ["weights", "export", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert hashlib.sha256(out.read_bytes()).hexdigest() in done.output
    exported = torch.load(out, weights_only=True)
    features = {k: v for k, v in original.items() if k.startswith("features.")}
    assert exported.keys() == features.keys()
    assert all(torch.equal(exported[k], features[k]) for k in features)
    _, weights_id = vgg11_bn_features(weights=str(out))
    assert weights_id.startswith("file:vgg11_bn_features.pt sha256:")
