"""Judging synthetic images against real ones: a classifier, FID/KID, train on synthetic and test on
real, and the augmentation test (do they help a classifier trained on real images?)."""
