"""LeNet-5, the judge of generated digits.

- `lenet.model`: the network and the (probabilities, features) view used for metrics.
- `lenet.train`: `train(LeNetConfig(...), model_path)` and `load_classifier(path)`.
- `lenet.metrics`: MNIST score, MNIST FID, class entropy, accuracy vs intended label.
- `lenet.sorting`: the sorting rule and the sorted folder.
- `lenet.evaluate`: `judge_generator(...)`: generate, classify, sort, measure, plot.
"""
