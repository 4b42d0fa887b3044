"""Feature extractors, one interface: the judges' classifier features (offline), torchvision's Inception-v3
and the FID papers' Inception through torch-fidelity."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganlib.data import to_uint8
from ganlib.env import default_device
from ganlib.errors import GanlibError, first_line

from .. import datasets
from .judges import classify, judge_for

__all__ = [
    "FeatureExtractor", "ClassifierFeatures", "InceptionFeatures", "FID_INSTALL", "PAPER_SAMPLES",
    "FIDInceptionFeatures", "FEATURES", "feature_extractor"
]


class FeatureExtractor:
    """Maps images [N, C, R, R] in [-1, 1] to features [N, dim] (float32, CPU). `name` says which features
    they are, for reports: numbers on different extractors' features are on different scales."""

    name: str
    dim: int

    def __call__(self, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Features [N, dim] of images [N, C, R, R], `batch` at a time, with a progress bar beyond one batch."""
        from tqdm.auto import tqdm

        with tqdm(total=len(images), desc="features", unit="img", leave=False, disable=len(images) <= batch) as bar:
            out = []
            for x in images.split(batch):
                out.append(self.features(x))
                bar.update(len(x))
        return torch.cat(out)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class ClassifierFeatures(FeatureExtractor):
    """The 128-d penultimate layer of the course's classifier for a labelled offline dataset (`ImageJudge`):
    no download, shipped or trained in seconds, and it knows what the dataset's classes look like."""

    def __init__(self, data_name: str, resolution: int):
        self.judge = judge_for(data_name, resolution)
        self.dim = 128
        self.name = (f"{data_name} classifier, {self.dim}-d penultimate layer (ganlib; held-out accuracy "
                     f"{self.judge.test_accuracy:.3f})")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return classify(self.judge.model, self.judge.prepare(images))[0]


def _inception_state_dict() -> dict:
    """torchvision's ImageNet Inception-v3 weights: from the torch hub cache, else downloaded once."""
    from pathlib import Path

    from torchvision.models import Inception_V3_Weights

    weights = Inception_V3_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file() and not datasets.downloads_allowed():
        raise GanlibError(f"Inception-v3 weights are not in {cached.parent} and downloads are off "
                          f"(GANLIB_OFFLINE=1): run once with network, or use the offline classifier features.")
    try:
        return weights.get_state_dict(progress=False)
    except Exception as e:  # no network, blocked host: one line, not a stack trace
        raise GanlibError(f"could not download the Inception-v3 weights ({first_line(e, 100)}): connect to the network "
                          f"once, or use the offline classifier features (--features classifier).") from None


class InceptionFeatures(FeatureExtractor):
    """The 2048-d pool features of torchvision's ImageNet Inception-v3. Images are resized to 299x299 (torch's
    bilinear) and grey images repeated to RGB. These are other weights than the 2015 TensorFlow graph of the
    FID papers and another resize, so values are NOT comparable with papers' FIDs (use
    `FIDInceptionFeatures` for that); it needs no extra package."""

    def __init__(self, device: torch.device | str | None = None):
        from torchvision.models import Inception3

        state = _inception_state_dict()
        # transform_input=False: these weights expect inputs in [-1, 1], which is what our images are
        net = Inception3(num_classes=1000, aux_logits=True, transform_input=False, init_weights=False)
        net.load_state_dict(state)
        net.fc = nn.Identity()  # the 2048-d average-pooled features instead of the ImageNet logits
        net.AuxLogits = None
        net.aux_logits = False
        self.device = default_device(device)
        self.net = net.to(self.device).eval().requires_grad_(False)
        self.dim = 2048
        self.name = ("torchvision Inception-v3 (ImageNet), 2048-d pool features, bilinear resize to 299x299: not "
                     "comparable with papers' FID (--features fid is)")

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise GanlibError(f"Inception features need images [N, 1 or 3, H, W], got {list(images.shape)}.")
        x = images.float().to(self.device).expand(-1, 3, -1, -1)  # grey -> RGB
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)  # [N, 3, 299, 299]
        return self.net(x).float().cpu()  # [N, 2048]


FID_INSTALL = 'pip install "ganlib[fid]"'  # the optional extra that FIDInceptionFeatures needs (torch-fidelity)
# The protocol of the papers' FID, KID and precision/recall (StyleGAN2-ADA's fid50k_full, kid50k_full, pr50k3_full)
PAPER_SAMPLES = 50_000  # generated images, against every image of the training set


def _fid_weights() -> Path:
    """The FID papers' Inception weights (TensorFlow's 2015 graph, converted by torch-fidelity): from the torch
    hub cache, else downloaded there once (95 MB)."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(URL_INCEPTION_V3).name
    if path.is_file():
        return path
    if not datasets.downloads_allowed():
        raise GanlibError(f"the FID Inception weights are not in {path.parent} and downloads are off "
                          f"(GANLIB_OFFLINE=1): run once with network, or download {URL_INCEPTION_V3} into "
                          f"that folder.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(URL_INCEPTION_V3, str(path), progress=False)  # via a temporary file
    except Exception as e:  # no network, blocked host: one line, not a stack trace
        raise GanlibError(f"could not download the FID Inception weights ({first_line(e, 100)}): on a machine with "
                          f"network, download {URL_INCEPTION_V3} into {path.parent}.") from None
    return path


class FIDInceptionFeatures(FeatureExtractor):
    """The 2048-d pool features of the Inception-v3 that FID, KID and precision/recall in papers use: the 2015
    TensorFlow graph of Heusel et al., through torch-fidelity, which reproduces it and TensorFlow 1.x's
    bilinear resize to 299x299 (the same features as pytorch-fid and clean-fid's legacy mode). Needs the
    optional extra (`FID_INSTALL`) and the weights (downloaded once). Numbers on these features are
    comparable with published ones when computed with the papers' protocol (`PAPER_SAMPLES`)."""

    def __init__(self, device: torch.device | str | None = None):
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError:
            raise GanlibError(f"--features fid needs torch-fidelity: {FID_INSTALL} (or pip install "
                              f"torch-fidelity), or use --features classifier.") from None
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                          feature_extractor_weights_path=str(_fid_weights()))
        self.device = default_device(device)
        self.net = net.to(self.device).eval()
        self.dim = 2048
        self.name = ("the FID Inception-v3 (TensorFlow 2015 graph, torch-fidelity), 2048-d pool features, "
                     "TensorFlow-style resize to 299x299")

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise GanlibError(f"FID features need images [N, 1 or 3, H, W], got {list(images.shape)}.")
        x = to_uint8(images).expand(-1, 3, -1, -1).to(self.device)  # [N, 3, H, W] uint8, grey -> RGB
        return self.net(x)[0].float().cpu()  # [N, 2048]


FEATURES = ("classifier", "fid", "inception")


def feature_extractor(name: str, data_name: str, resolution: int) -> FeatureExtractor:
    """``classifier`` (offline, labelled datasets), ``fid`` (the papers' Inception, through torch-fidelity) or
    ``inception`` (torchvision's ImageNet Inception-v3: not comparable with papers)."""
    if name == "classifier":
        return ClassifierFeatures(data_name, resolution)
    if name == "fid":
        return FIDInceptionFeatures()
    if name == "inception":
        return InceptionFeatures()
    raise GanlibError(f"unknown features {name!r}: use one of {', '.join(FEATURES)}.")
