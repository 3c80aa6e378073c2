"""What a run and a sweep are made of: plain dataclasses, importable without Keras."""

from dataclasses import dataclass

AUGMENTATIONS = ("rotation", "shift", "shear", "zoom", "vflip", "hflip")
COURSE_AUGMENT = ("rotation", "shift", "shear", "zoom", "vflip")
LARGE_AUGMENT = ("shear", "zoom", "hflip")


@dataclass
class TrainConfig:
    """Every knob of a run; the defaults are the course's chosen 150 px model (8.10)."""

    data: str
    size: int = 150
    epochs: int = 10
    learning_rate: float = 0.001
    size_inner: int | None = 100
    droprate: float = 0.2
    augment: tuple[str, ...] = ()
    augment_copies: int = 0
    weights: str = "imagenet"
    train_base: bool = False
    recalibrate_bn: bool = False
    batch_size: int = 32
    limit: int | None = None
    cache: bool = True
    distribute: bool = False
    seed: int = 1
    version: str = "v1"
    min_logit_std: float = 0.01

    @property
    def cacheable(self) -> bool:
        """Features can be cached when the base is frozen and augmentation, if any, uses fixed copies."""
        return self.cache and not self.train_base and (not self.augment or self.augment_copies > 0)


@dataclass(frozen=True)
class Sweep:
    """Which config field varies, over which values, on top of which fixed settings."""

    field: str
    values: tuple
    fixed: dict
    epochs: int = 10


SWEEPS = {
    "lr": Sweep("learning_rate", (0.0001, 0.001, 0.01, 0.1), {"size_inner": None, "droprate": 0.0}),
    "inner": Sweep("size_inner", (10, 100, 1000), {"learning_rate": 0.001, "droprate": 0.0}),
    "dropout": Sweep("droprate", (0.0, 0.2, 0.5, 0.8), {"learning_rate": 0.001, "size_inner": 100},
                     epochs=30),
    "augment": Sweep("augment", ((), COURSE_AUGMENT, LARGE_AUGMENT),
                     {"learning_rate": 0.001, "size_inner": 100, "droprate": 0.2, "augment_copies": 2}, epochs=30),
}
