"""Which fruit is this? A classifier on a run's features: train (Spark MLlib logistic
regression), export (one ONNX graph: pixels -> probabilities) and batch prediction on Spark."""
