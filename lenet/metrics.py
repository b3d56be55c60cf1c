"""How good are generated digits? Judged through LeNet-5's eyes.

Accuracy alone is weak (noise can be classified with full confidence), so alongside it:
- `mnist_score`: the Inception Score (Salimans et al., 2016) with LeNet's softmax in place
  of Inception's: exp(E_x KL(p(y|x) || p(y))). 1 = one class or no confident digit,
  10 = confident and evenly spread over all ten.
- `genlab.metrics.frechet_distance` between LeNet's 84-d penultimate features of two image
  sets (the "MNIST FID"; Heusel et al., 2017, with LeNet in place of Inception). 0 = same statistics.
- the class distribution and its entropy: mode coverage.
"""

import numpy as np

from genlab.metrics import frechet_distance
from genlab.mnist import NUM_CLASSES


def mnist_score(probabilities, eps=1e-12):
    p_yx = np.asarray(probabilities, dtype=np.float64)
    p_y = p_yx.mean(axis=0, keepdims=True)
    kl = (p_yx * (np.log(p_yx + eps) - np.log(p_y + eps))).sum(axis=1)
    return float(np.exp(kl.mean()))


def confusion_matrix(true_labels, predicted):
    """Counts per (true, predicted) pair: rows are true labels, columns predictions."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=int)
    np.add.at(matrix, (np.asarray(true_labels), np.asarray(predicted)), 1)
    return matrix


def class_distribution(predicted):
    counts = np.bincount(np.asarray(predicted), minlength=NUM_CLASSES)
    return counts / max(1, counts.sum())


def entropy_bits(distribution):
    """Shannon entropy in bits: 0 for one class, log2(10) ~ 3.32 for ten equal classes."""
    p = np.asarray(distribution, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def quality_report(probabilities, features, reference_features, intended_labels=None, confident=0.9):
    """All figures for one image set; `reference_features` are real MNIST test features."""
    probabilities = np.asarray(probabilities)
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    distribution = class_distribution(predicted)
    report = {
        "count": int(len(predicted)),
        "mean_confidence": float(confidence.mean()),
        f"fraction_confidence_ge_{confident}": float((confidence >= confident).mean()),
        "class_distribution": distribution.tolist(),
        "class_entropy_bits": entropy_bits(distribution),
        "max_entropy_bits": float(np.log2(NUM_CLASSES)),
        "mnist_score": mnist_score(probabilities),
        "mnist_fid": frechet_distance(features, reference_features),
    }
    if intended_labels is not None:
        intended = np.asarray(intended_labels)
        correct = predicted == intended
        report["accuracy_vs_intended"] = float(correct.mean())
        report["accuracy_vs_intended_per_class"] = [
            float(correct[intended == c].mean()) if (intended == c).any() else None for c in range(NUM_CLASSES)
        ]
    return report
