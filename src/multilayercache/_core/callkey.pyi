"""Types of the compiled ``callkey.pyx``: its pure twin's interface, which it shares."""

from ._callkey_py import FIRST_AS_ARGUMENT as FIRST_AS_ARGUMENT
from ._callkey_py import FIRST_AS_INSTANCE as FIRST_AS_INSTANCE
from ._callkey_py import FIRST_LEFT_OUT as FIRST_LEFT_OUT
from ._callkey_py import CallKey as CallKey
from ._callkey_py import KeyMaker as KeyMaker
