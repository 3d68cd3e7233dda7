"""Types of the compiled ``write_batch.pyx``: its pure twin's interface, which it shares."""

from ._write_batch_py import DELETE as DELETE
from ._write_batch_py import NO_EXPIRY as NO_EXPIRY
from ._write_batch_py import pack_writes as pack_writes
