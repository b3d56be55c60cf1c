"""What the tests share besides fixtures: paths and skips, numeric checks, program runners, stand-in networks,
image folders with known answers, a small SD 1.x checkpoint."""
