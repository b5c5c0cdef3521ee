"""Stage 1: train a float Keras model on an image dataset and save it with its test split."""
