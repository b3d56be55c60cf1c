"""Judging synthetic images against real ones: a classifier, FID/KID, train on synthetic and test on real."""
