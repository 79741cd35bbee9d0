"""fastmlp.kernels: every Numba kernel and fused training loop, and nothing else.

Installed from the checkout's top-level ``kernels/`` folder as the subpackage
``fastmlp.kernels``.
"""
