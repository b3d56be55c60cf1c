"""LeNet-5, the judge of generated digits. It never imports the GAN: it judges images.

- `lenet.model`: the network and the (probabilities, features) view used for metrics.
- `lenet.train`: `train(LeNetConfig(...), model_path)` and `load_classifier(path)`.
- `lenet.metrics`: MNIST score, MNIST FID, class entropy, accuracy vs intended label.
- `lenet.reference`: the fixed, versioned LeNet-5 that every MNIST metric is measured with.
- `lenet.sorting`: the sorting rule and the sorted folder.
"""
