"""convert: Keras model (or a user's int8 .tflite) -> verified int8 .tflite + generated firmware files."""
