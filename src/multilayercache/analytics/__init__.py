"""Analytics over a running cache, off the request path: windowed rates, frequency skew
and anomaly detection (``insights.py``, ``anomaly.py``), sampled by ``sampler.py``."""
