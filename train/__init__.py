"""Training of the course's Xception clothing classifier on Keras 3: the ImageNet base, 150 px then 299 px,
and the course's experiments (learning rate, inner layer, dropout, augmentation)."""
