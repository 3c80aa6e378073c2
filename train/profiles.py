"""Named training profiles: the course's models as presets that flags may override."""

from train.config import LARGE_AUGMENT

PROFILES = {
    # 8.10: the 150 px model chosen by the sweeps
    "small": {"size": 150, "learning_rate": 0.001, "size_inner": 100, "droprate": 0.2, "epochs": 10,
              "version": "v3"},
    # 8.11: the large model: 299 px, lower learning rate, more epochs, light augmentation; on a CPU the
    # augmentation comes from two cached augmented copies of every training image
    "large": {"size": 299, "learning_rate": 0.0005, "size_inner": 100, "droprate": 0.2, "epochs": 50,
              "augment": LARGE_AUGMENT, "augment_copies": 2, "version": "v4"},
    # minutes on 2 CPU cores without ImageNet weights: the whole network trained from scratch at
    # 96 px on 60 images per class, BatchNorm statistics re-estimated after every epoch
    "quick": {"size": 96, "learning_rate": 0.001, "size_inner": 100, "droprate": 0.2, "epochs": 3,
              "weights": "none", "train_base": True, "recalibrate_bn": True, "limit": 60, "version": "quick",
              "min_logit_std": 0.5},
}
