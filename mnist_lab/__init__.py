"""The MNIST lab's last step, which ties the GAN and LeNet together.

- `mnist_lab.judge`: `judge_generator(...)`: sample a generator, sort its digits with the
  user's LeNet, measure them with the reference judge beside real digits, plot.

`gan/` and `lenet/` never import each other; this package imports both, and the programs
`genlab-mnist-lab` and `genlab-sort-digits` call it.
"""
