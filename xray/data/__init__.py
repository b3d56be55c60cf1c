"""The classes of a dataset and their prompts, and users' class-folder image sets. No TensorFlow."""
