"""CPU kernels behind the towers (blocked convolution, counter-based dropout) and the switch that picks them or stock PyTorch."""
