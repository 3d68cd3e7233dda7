"""The records of a load in flight (compiled twin of ``_flight_py.py``, which explains them):
C structs, so that the sync front door starts and ends a load without Python frames."""


cdef class Lead:
    """One caller's lead of a flight."""

    def __init__(self, Lead parent):
        self.lenders = []
        self.parent = parent

    def lent_by(self, gate):
        """Whether a caller waiting for this flight lends it a slot of ``gate``."""
        for hold in self.lenders:
            if hold.gate is gate:
                return True
        return False


cdef class Call:
    """One key's call in a thread flight."""

    def __init__(self, Lead lead):
        self.lead = lead

    cpdef finish(self, value, error):
        """The call ended (taken out of the flight's calls): wake its waiters."""
        self.value = value
        self.error = error
        self.done = True
        ended = self.ended
        if ended is not None:
            ended.set()


cdef Call new_call(object parent):
    """``Call(Lead(parent))``, without parsing arguments: the front door's load makes one."""
    cdef Lead lead = Lead.__new__(Lead)
    lead.lenders = []
    lead.parent = parent
    cdef Call call = Call.__new__(Call)
    call.lead = lead
    return call
