"""Training of the course's Xception clothing classifier on Keras 3."""
