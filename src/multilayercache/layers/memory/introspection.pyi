"""Types of the compiled ``introspection.pyx``: its pure twin's interface, which it shares."""

from ._introspection_py import access_counts as access_counts
from ._introspection_py import cached_slots as cached_slots
from ._introspection_py import frequency_estimate as frequency_estimate
from ._introspection_py import held_keys as held_keys
from ._introspection_py import internals as internals
from ._introspection_py import keys_at as keys_at
from ._introspection_py import missed_keys_at as missed_keys_at
from ._introspection_py import remaining_ttl as remaining_ttl
from ._introspection_py import snapshot as snapshot
from ._introspection_py import stats as stats
from ._introspection_py import top_keys as top_keys
