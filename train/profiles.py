"""Named training profiles: the course's models as presets that flags may override."""

PROFILES = {
    # 8.10: the 150 px model chosen by the sweeps
    "small": {"size": 150, "learning_rate": 0.001, "size_inner": 100, "droprate": 0.2, "epochs": 10,
              "version": "v3"},
    # 8.11: the large model: 299 px, lower learning rate, more epochs. The course adds light augmentation
    # (LARGE_AUGMENT); measured here with two cached augmented copies it took 3x as long and scored lower
    # (README, "Training the course's models"), so the CPU profile trains without; add
    # --augment shear,zoom,hflip --augment-copies 2 for the course's variant.
    "large": {"size": 299, "learning_rate": 0.0005, "size_inner": 100, "droprate": 0.2, "epochs": 50,
              "version": "v4"},
    # minutes on 2 CPU cores without ImageNet weights: the whole network trained from scratch at
    # 96 px on 60 images per class, BatchNorm statistics re-estimated after every epoch
    "quick": {"size": 96, "learning_rate": 0.001, "size_inner": 100, "droprate": 0.2, "epochs": 3,
              "weights": "none", "train_base": True, "recalibrate_bn": True, "limit": 60, "version": "quick",
              "min_logit_std": 0.5},
}
