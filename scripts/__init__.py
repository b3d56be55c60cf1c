"""The programs: absl flags, their checks, and one library call each.

genlab-train-gan, genlab-train-lenet, genlab-sort-digits, genlab-mnist-lab (Lab 2);
genlab-xray, genlab-convert-diffusers (Lab 1); make_reference_judge (maintainers).
"""
