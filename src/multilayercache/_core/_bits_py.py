"""Bit helpers shared by the pure-Python twins (the compiled ones inline ``bits.pxd``).

Python's ``hash()`` of small ints is the int itself, so consecutive keys would land in
consecutive sketch blocks. ``spread`` runs the 64-bit hash through the splitmix64 finalizer
(Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014), whose
output bits each depend on every input bit.
"""

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
GOLDEN64 = 0x9E3779B97F4A7C15  # 2^64 / phi, odd: multiplying by it permutes 64-bit words


def spread(py_hash: int) -> int:
    """Mix a Python hash (signed, 64-bit) into 64 well-distributed bits."""
    z = py_hash & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def next_power_of_two(n: int) -> int:
    """The smallest power of two >= n (and >= 1)."""
    return 1 << max(0, (n - 1).bit_length())
