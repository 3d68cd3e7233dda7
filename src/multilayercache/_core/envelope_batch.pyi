"""Types of the compiled ``envelope_batch.pyx``: its pure twin's interface, which it shares."""

from ._envelope_batch_py import EXACT_MS as EXACT_MS
from ._envelope_batch_py import FORMAT_3_HEADER as FORMAT_3_HEADER
from ._envelope_batch_py import FORMAT_4_HEADER as FORMAT_4_HEADER
from ._envelope_batch_py import read_batch as read_batch
from ._envelope_batch_py import read_fresh as read_fresh
from ._envelope_batch_py import read_one as read_one
