"""The course's ``make_model``: a frozen Xception base under a small dense head."""

import keras

from runtime.errors import first_line
from train.errors import WeightsError
from train.imagenet import resolve

FEATURES = 2048  # channels of Xception's last block, the head's input


def make_base(input_size: int, weights: str = "imagenet"):
    """Xception without top; ``weights`` is ``imagenet``, ``none`` or a file (see ``train.imagenet``)."""
    origin = resolve(weights)
    try:
        return keras.applications.Xception(weights=origin.file, include_top=False,
                                           input_shape=(input_size, input_size, 3))
    except Exception as e:
        raise WeightsError(f"cannot load base weights from {origin.file}: {first_line(e)}") from e


def make_head(size_inner=None, droprate=0.0, n_classes=10):
    """Pooled features -> optional Dense(relu) -> Dropout -> Dense logits."""
    layers = [keras.Input((FEATURES,))]
    if size_inner:
        layers.append(keras.layers.Dense(size_inner, activation="relu", name="inner"))
    layers += [keras.layers.Dropout(droprate, name="dropout"),
               keras.layers.Dense(n_classes, name="logits")]
    return keras.Sequential(layers, name="head")


def compile_model(model, learning_rate: float):
    """Adam, categorical cross-entropy on logits, accuracy: as the course."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def make_model(input_size=150, learning_rate=0.01, size_inner=100, droprate=0.5,
               weights="imagenet", train_base=False, n_classes=10, base=None):
    """Build and compile the classifier; ``base`` reuses an existing Xception (cached training)."""
    base = base or make_base(input_size, weights)
    base.trainable = train_base
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = make_head(size_inner, droprate, n_classes)(x)
    return compile_model(keras.Model(inputs, outputs, name="xception_clothing"), learning_rate)
